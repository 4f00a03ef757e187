"""Change keys: which writes can change what ``availability`` caches.

A process caches, per Schedule, the index rows of its Slots and its own actors. Another
process (or another server) may write any of them, so every write transaction counts one
change of each key its old and new versions touch (``storage.schema.watch_versions``), and
the cache checks its keys' counters in the query that reads the answer's resources.

- a Slot touches ``Schedule/<id>`` of its schedule (a relative reference): creating,
  moving, re-timing, re-statusing or deleting a slot changes that Schedule's agenda;
- a Schedule touches its own key: its actors are what ``Schedule:actor`` includes.

The rows are index rows of the kind ``KIND``: written, replaced and deleted with the
resource's other index rows, and rebuilt by ``fhir-server reindex``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.storage.port import IndexRows

KIND = "watch"
# (resource type, reference parameter): a write touches the key of each relative target
WATCHED_REFERENCES = frozenset({("Slot", "schedule")})
# a write of a resource of these types touches its own key
WATCHED_TYPES = frozenset({"Schedule"})


def key(res_type: str, res_id: str) -> str:
    return f"{res_type}/{res_id}"


def watch_rows(res_type: str, res_id: str | None, rows: IndexRows) -> list[dict[str, Any]]:
    """The ``KIND`` rows of a resource, from its other index rows."""
    keys: dict[str, str] = {}  # key -> why (the ``param`` column)
    if res_type in WATCHED_TYPES and res_id:
        keys[key(res_type, res_id)] = "_self"
    for r in rows.get("reference", ()):
        relative = r.get("url") is None and r.get("target_type") and r.get("target_id")
        if relative and (res_type, r["param"]) in WATCHED_REFERENCES:
            keys.setdefault(key(r["target_type"], r["target_id"]), r["param"])
    return [{"param": why, "key": k} for k, why in keys.items()]
