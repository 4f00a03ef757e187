"""Which feeds are already stored exactly as they are: found by reading, without writing.

Most feeds a vendor sends again hold what the store already has. Finding that through the
write path costs a write transaction per practitioner (row locks, the window query, the
slots read, a commit); here one read statement per batch of feeds answers it for many
practitioners at once, and a feed found unchanged is counted so without any transaction.

A feed is unchanged when, in ONE statement (one snapshot of the database, on both
engines: the rows it reads all existed together at one instant):

- each of its resources and slots has a current, not deleted row whose content, without
  ``meta.versionId``/``lastUpdated``, equals the mapped resource (``reconcile.same``);
- the caller may change each of them (``access.require_change``'s rule, as the write path checks
  an unchanged resource too: "unchanged" never tells a caller what another's row holds);
- no stored, current Slot of its Schedules starts in its window without being in the feed
  (nothing has vanished).

Then the write path would write nothing either (every resource compares equal, nothing
vanished, so no booking check is needed), and the answer is the one it would give had it
run at that instant. Anything else (a difference, a refusal, a vanished slot, a rejected
feed) leaves the feed to ``reconcile``, which decides under its locks as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import NamedTuple

import orjson
from sqlalchemy import and_, cast, literal, null, or_, select, union_all
from sqlalchemy.sql import Executable
from sqlalchemy.types import Boolean, LargeBinary, String

from fhir_server.core.caller import SYSTEM
from fhir_server.ingest.reconcile import canonical
from fhir_server.interactions.context import Context
from fhir_server.storage import schema
from fhir_server.storage.types import UtcDateTime
from mappings.contract import PractitionerFeed

_RES = schema.resources
_PAIR = schema.idx_ref_date
# (type, id) pairs per statement: far below both engines' bound-parameter limits (32,766)
BATCH_KEYS = 5000

Key = tuple[str, str]


class _Row(NamedTuple):
    """What the check needs of a stored resource."""

    deleted: bool
    content: bytes
    owner: str | None


async def unchanged_feeds(ctx: Context, feeds: Sequence[PractitionerFeed]) -> set[int]:
    """Indexes (in ``feeds``) of the feeds stored exactly as they are."""
    out: set[int] = set()
    for batch in _batches(feeds):
        out.update(await _check(ctx, feeds, batch))
    return out


def _batches(feeds: Sequence[PractitionerFeed]) -> Iterator[list[int]]:
    batch: list[int] = []
    size = 0
    for n, feed in enumerate(feeds):
        if feed.rejected:
            continue
        count = len(feed.resources) + len(feed.slots)
        if count > BATCH_KEYS:
            continue  # too many for one statement: left to the write path (it chunks)
        if batch and size + count > BATCH_KEYS:
            yield batch
            batch, size = [], 0
        batch.append(n)
        size += count
    if batch:
        yield batch


async def _check(ctx: Context, feeds: Sequence[PractitionerFeed], batch: list[int]) -> set[int]:
    keys: dict[str, set[str]] = {}
    windows: dict[tuple[datetime, datetime], set[str]] = {}
    for n in batch:
        feed = feeds[n]
        for resource in [*feed.resources, *feed.slots]:
            keys.setdefault(str(resource.get("resourceType")), set()).add(str(resource.get("id")))
        if feed.window is not None and feed.schedule_ids:
            windows.setdefault(feed.window, set()).update(feed.schedule_ids)
    if not keys:
        return set()
    stored: dict[Key, _Row] = {}
    in_window: dict[str, list[tuple[str, datetime]]] = {}  # schedule id -> (slot id, start)
    async with ctx.store.reading() as session:  # the server's read: every row, as a write
        for row in await session.fetch(_statement(keys, windows)):
            if row.window:
                in_window.setdefault(row.target_id, []).append((row.res_id, row.low))
            else:
                stored[(row.res_type, row.res_id)] = _Row(
                    bool(row.deleted), bytes(row.content), row.owner
                )
    return {n for n in batch if _unchanged(ctx, feeds[n], stored, in_window)}


def _statement(
    keys: dict[str, set[str]], windows: dict[tuple[datetime, datetime], set[str]]
) -> Executable:
    """The feeds' stored rows and the ids of their Schedules' Slots in their windows, in one
    statement (one snapshot); ``window`` tells the two parts apart."""
    rows = select(
        _RES.c.res_type,
        _RES.c.res_id,
        _RES.c.deleted,
        _RES.c.content,
        _RES.c.owner,
        cast(null(), String(64)).label("target_id"),
        cast(null(), UtcDateTime()).label("low"),
        literal(False, Boolean).label("window"),
    ).where(
        or_(*(and_(_RES.c.res_type == t, _RES.c.res_id.in_(sorted(i))) for t, i in keys.items()))
    )
    if not windows:
        return rows
    slots = (
        select(
            literal("Slot", String(64)),
            _RES.c.res_id,
            cast(null(), Boolean),
            cast(null(), LargeBinary),
            cast(null(), String(128)),
            _PAIR.c.target_id,
            _PAIR.c.low,
            literal(True, Boolean),
        )
        .select_from(_PAIR.join(_RES, _RES.c.pk == _PAIR.c.res_pk))
        .where(
            and_(
                _PAIR.c.res_type == "Slot",
                _PAIR.c.param == "schedule+start",
                _PAIR.c.target_type == "Schedule",
                _RES.c.deleted.is_(False),
                or_(
                    *(
                        and_(
                            _PAIR.c.target_id.in_(sorted(ids)),
                            _PAIR.c.low >= low,
                            _PAIR.c.low < high,
                        )
                        for (low, high), ids in windows.items()
                    )
                ),
            )
        )
    )
    return union_all(rows, slots)


def _unchanged(
    ctx: Context,
    feed: PractitionerFeed,
    stored: dict[Key, _Row],
    in_window: dict[str, list[tuple[str, datetime]]],
) -> bool:
    for resource in [*feed.resources, *feed.slots]:
        res_type, res_id = str(resource.get("resourceType")), str(resource.get("id"))
        previous = stored.get((res_type, res_id))
        if previous is None or previous.deleted:
            return False
        if canonical(orjson.loads(previous.content)) != canonical(resource):  # reconcile.same
            return False
        if ctx.caller is not SYSTEM and not ctx.policy.may_change(
            ctx.caller, "update", res_type, res_id, previous.owner
        ):
            return False  # the write path refuses it (access.require_change), with its reason
    if feed.window is not None:
        low, high = feed.window
        slot_ids = {str(s.get("id")) for s in feed.slots}
        for schedule_id in feed.schedule_ids:
            for slot_id, start in in_window.get(schedule_id, ()):
                if low <= start < high and slot_id not in slot_ids:
                    return False  # vanished: the write path removes it (or keeps a booking)
    return True
