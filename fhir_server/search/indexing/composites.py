"""Reference + date pairs indexed together in ``idx_ref_date``.

The SAS slot search asks for the free slots of a few schedules in a 72-hour window. With
one index table per parameter type, the database finds every slot of those schedules
(their whole horizon: thousands) through ``idx_reference`` and then checks each one's start
in ``idx_date``; the work grows with the length of the agendas, not with the answer. A row
holding both the schedule and the start lets one index range scan on
``(schedule, start)`` read only the slots the query returns.

A pair is declared only when both elements are single-valued in the resource (``Slot.schedule``
1..1, ``Slot.start`` 1..1): then "some reference row matches and some date row matches" is
the same as "the one row holding both matches", and the planner may fuse the criteria.

``width`` is the longest span one date value of the pair can cover. ``Slot.start`` is an
``instant`` (seconds at least, checked on every write), so its range is at most one second
long; that bound gives the planner a condition on ``low`` alone, which an index range scan
can use, for prefixes (``ge``, ``gt``) that are otherwise conditions on ``high``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fhir_server.storage.port import IndexRows

KIND = "ref_date"  # the IndexRows key (and schema.INDEX_TABLES key) of the pair rows


@dataclass(frozen=True, slots=True)
class Pair:
    res_type: str
    reference: str  # search parameter codes
    date: str
    width: timedelta

    @property
    def name(self) -> str:
        return f"{self.reference}+{self.date}"


PAIRS: dict[str, tuple[Pair, ...]] = {
    "Slot": (Pair("Slot", "schedule", "start", timedelta(seconds=1)),),
}


def pair_for(res_type: str, reference: str) -> Pair | None:
    """The pair of ``res_type`` whose reference parameter is ``reference``, if declared."""
    return next((p for p in PAIRS.get(res_type, ()) if p.reference == reference), None)


def pair_rows(res_type: str, rows: IndexRows) -> list[dict[str, Any]]:
    """The ``idx_ref_date`` rows of a resource, from its reference and date rows.

    Only relative references (``Type/id``) are paired: chains and ``Type/id`` searches never
    match absolute URLs (see ``plan``)."""
    out: list[dict[str, Any]] = []
    for pair in PAIRS.get(res_type, ()):
        targets = [
            r
            for r in rows.get("reference", ())
            if r["param"] == pair.reference and r.get("url") is None and r.get("target_type")
        ]
        dates = [d for d in rows.get("date", ()) if d["param"] == pair.date]
        out.extend(
            {
                "param": pair.name,
                "target_type": t["target_type"],
                "target_id": t["target_id"],
                "low": d["low"],
                "high": d["high"],
            }
            for t in targets
            for d in dates
        )
    return out
