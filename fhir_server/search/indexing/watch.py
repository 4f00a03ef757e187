"""Change keys: which writes can change what ``availability`` caches.

A process caches, per Schedule, the index rows of its Slots and its actors, and how the
SAS chain ``schedule.actor:Practitioner.identifier`` resolves. Another process (or another
server) may write any of them, so every write transaction counts one change of each key its
old and new versions touch (``storage.schema.watch_versions``), and the cache checks its
keys' counters in the statement that reads the answer's resources.

- a Slot touches ``Schedule/<id>`` of its schedule (a relative reference): creating,
  moving, re-timing, re-statusing or deleting a slot changes that Schedule's agenda;
- a Schedule touches its own key (its actors are what ``Schedule:actor`` includes) and
  ``Schedule?actor=<Type>/<id>`` for each actor (which schedules a practitioner has);
- a Practitioner touches ``Practitioner?identifier=<system>|<value>`` for each identifier
  (who holds an RPPS number).

Two values that print the same key (a ``|`` inside a system) share a counter: a write then
also invalidates the other's cache entry, never the reverse. The rows are index rows of the
kind ``KIND``: written, replaced and deleted with the resource's other index rows, and
rebuilt by ``fhir-server reindex``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.storage import schema
from fhir_server.storage.port import IndexRows

KIND = schema.WATCH_KIND
SELF = "_self"
# (resource type, reference parameter) -> the target's own key, or a "who points at it" key
AGENDA_REFERENCES = frozenset({("Slot", "schedule")})
POINTER_REFERENCES = frozenset({("Schedule", "actor")})
TOKENS = frozenset({("Practitioner", "identifier")})
# a write of a resource of these types touches its own key
WATCHED_TYPES = frozenset({"Schedule"})


def key(res_type: str, res_id: str) -> str:
    """The key of a resource (and of a Schedule's agenda)."""
    return f"{res_type}/{res_id}"


def pointer_key(res_type: str, param: str, target_type: str, target_id: str) -> str:
    """Which ``res_type`` resources point at ``target`` through ``param``."""
    return f"{res_type}?{param}={target_type}/{target_id}"


def token_key(res_type: str, param: str, system: str, code: str) -> str:
    """Which ``res_type`` resources hold the token ``system|code`` in ``param``."""
    return f"{res_type}?{param}={system}|{code}"


def watch_rows(res_type: str, res_id: str | None, rows: IndexRows) -> list[dict[str, Any]]:
    """The ``KIND`` rows of a resource, from its other index rows."""
    keys: dict[str, str] = {}  # key -> why (the ``param`` column)
    if res_type in WATCHED_TYPES and res_id:
        keys[key(res_type, res_id)] = SELF
    for r in rows.get("reference", ()):
        if r.get("url") is not None or not r.get("target_type") or not r.get("target_id"):
            continue  # only relative references are followed (plan, include)
        param = r["param"]
        if (res_type, param) in AGENDA_REFERENCES:
            keys.setdefault(key(r["target_type"], r["target_id"]), param)
        if (res_type, param) in POINTER_REFERENCES:
            pointer = pointer_key(res_type, param, r["target_type"], r["target_id"])
            keys.setdefault(pointer, param)
    for r in rows.get("token", ()):
        if (res_type, r["param"]) in TOKENS and r.get("system") and r.get("code") is not None:
            keys.setdefault(token_key(res_type, r["param"], r["system"], r["code"]), r["param"])
    return [{"param": why, "key": k} for k, why in keys.items()]
