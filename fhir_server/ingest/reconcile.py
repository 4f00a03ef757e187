"""One practitioner's feed reconciled into the store whole or not at all: in one write
transaction (``reconcile``), or in a savepoint of a transaction shared with other
practitioners' feeds (``reconcile_feeds``: one commit for many).

The feed is a snapshot (``mappings.contract.PractitionerFeed``): its Practitioner,
PractitionerRole(s) and Schedule(s) are written when they differ from the stored ones; its
Slots are created or updated when new or changed; a stored Slot of its Schedules starting in
its window and absent from it has vanished: deleted, or marked ``busy-unavailable``
(``vanished="busy"``). What is unchanged is not written at all, so no version, no
``lastUpdated`` and no change counter (``search/indexing/watch.py``) moves and the
availability cache stays warm. A booked Slot (status ``busy``, or named by an Appointment) is
never freed nor removed by a feed. A feed with ``window`` None (events) only upserts.

Every write goes through ``write_version`` as the context's caller: structure and profile
validation, the access policy (a vendor changes only what it owns), identifier uniqueness,
referential integrity (checked once at the end of the feed). Any refusal rolls the whole
feed back. Two ingests of one practitioner racing: the loser's transaction fails on the
winner's rows (a conflict, a deadlock) and is retried whole, a bounded number of times; its
retry then finds the winner's rows and writes only what still differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

import orjson
from sqlalchemy import and_, select

from fhir_server.core import errors
from fhir_server.core.errors import FhirError
from fhir_server.ingest.report import FeedReport, Finding
from fhir_server.interactions import access
from fhir_server.interactions._resource import check_body, check_id, check_type, write_version
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences
from fhir_server.storage import schema
from fhir_server.storage.port import Stored, WriteSession
from mappings.contract import FhirJson, PractitionerFeed

Vanished = Literal["delete", "busy"]
VANISHED_STATUS = "busy-unavailable"  # "busy" means booked: a vanished slot may come back
BOOKED_STATUS = "busy"
ATTEMPTS = 4  # write transactions tried per feed before its race is reported
_ORDER = {"Practitioner": 0, "PractitionerRole": 1, "Location": 1, "Schedule": 2}
_RES = schema.resources
_PAIR = schema.idx_ref_date
_REF = schema.idx_reference


def canonical(resource: FhirJson) -> FhirJson:
    """The content a feed controls: without the server's ``meta.versionId``/``lastUpdated``."""
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not ({"versionId", "lastUpdated"} & meta.keys()):
        return resource
    kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    if kept:
        out["meta"] = kept
    return out


def same(stored: Stored | None, resource: FhirJson) -> bool:
    if stored is None or stored.deleted:
        return False
    return bool(canonical(orjson.loads(stored.content)) == canonical(resource))


async def reconcile(
    ctx: Context, feed: PractitionerFeed, report: FeedReport, vanished: Vanished = "delete"
) -> None:
    """Write ``feed`` whole (filling ``report``) or not at all (``report.rejected``)."""
    # a rejected feed counts its resources, at least 1 (one whose practitioner has no RPPS
    # may hold none): a rejection always shows in the counts
    size = max(1, len(feed.resources) + len(feed.slots))
    if feed.rejected:
        report.rejected = size
        return
    for attempt in range(1, ATTEMPTS + 1):
        report.attempts = attempt
        report.reset_counts()
        try:
            async with ctx.store.writing(ctx.caller) as session:
                await _write_feed(ctx, session, feed, report, vanished)
            return
        except (errors.Conflict, errors.Busy) as exc:
            # Another transaction wrote these rows meanwhile: retry the whole feed.
            if attempt == ATTEMPTS:
                _reject(report, size, exc)
                return
            await asyncio.sleep(0.02 * 2**attempt)
        except FhirError as exc:
            _reject(report, size, exc)
            return


# Feeds written per transaction, each in its own savepoint: one commit (one WAL flush on
# PostgreSQL) and one count of the change keys for many practitioners.
GROUP_FEEDS = 50
GROUP_RESOURCES = 2500


async def reconcile_feeds(
    ctx: Context,
    feeds: Sequence[PractitionerFeed],
    reports: Sequence[FeedReport],
    vanished: Vanished = "delete",
    *,
    unchanged: Collection[int] = (),
    done: Callable[[], None] | None = None,
) -> None:
    """Every feed reconciled as ``reconcile`` does it, each one whole or not at all, several
    in one transaction. ``unchanged``: the indexes of feeds already found stored as they
    are (``precheck``), counted without writing; ``done`` is called once per feed."""
    groups: list[list[int]] = [[]]
    size = 0
    for n, feed in enumerate(feeds):
        if n in unchanged:
            reports[n].reset_counts()
            reports[n].unchanged = len(feed.resources) + len(feed.slots)
            reports[n].attempts = 0
            if done is not None:
                done()
            continue
        if len(groups[-1]) >= GROUP_FEEDS or size >= GROUP_RESOURCES:
            groups.append([])
            size = 0
        groups[-1].append(n)
        size += len(feed.resources) + len(feed.slots)
    # One group after another: two at once (PostgreSQL) measured no better here
    # (docs/perf.md), and groups that create Practitioners would queue on the identifier
    # lock anyway.
    for group in groups:
        if group:
            await _reconcile_group(ctx, feeds, reports, group, vanished, done)


async def _reconcile_group(
    ctx: Context,
    feeds: Sequence[PractitionerFeed],
    reports: Sequence[FeedReport],
    group: list[int],
    vanished: Vanished,
    done: Callable[[], None] | None,
) -> None:
    """One transaction, one savepoint per feed: a feed refused by the store rolls back alone
    (rejected, as ``reconcile`` rejects it); a feed that met a race (or any failure of the
    database inside its savepoint) is rolled back and written again alone, after the
    commit, by ``reconcile`` and its retries. If the commit itself fails, nothing of the
    group was stored and every feed of it is written again alone."""
    together = [n for n in group if not feeds[n].rejected]
    alone: list[int] = [n for n in group if feeds[n].rejected]
    if len(together) > 1:
        findings = {n: list(reports[n].findings) for n in together}
        try:
            async with ctx.store.writing(ctx.caller) as session:
                for n in together:
                    feed, report = feeds[n], reports[n]
                    report.reset_counts()
                    report.attempts = 1
                    try:
                        async with session.savepoint():
                            await _write_feed(ctx, session, feed, report, vanished)
                    except (errors.Conflict, errors.Busy):
                        alone.append(n)
                    except FhirError as exc:
                        _reject(report, max(1, len(feed.resources) + len(feed.slots)), exc)
                    except Exception:  # a driver's error: written again alone, then reported
                        alone.append(n)
        except Exception:  # the commit failed: nothing of the group was stored
            for n in together:
                reports[n].findings = findings[n]
            alone = group
    else:
        alone = group
    for n in sorted(alone):
        reports[n].reset_counts()
        await reconcile(ctx, feeds[n], reports[n], vanished)
    if done is not None:
        for _ in group:
            done()


def _reject(report: FeedReport, size: int, exc: FhirError) -> None:
    report.reset_counts()
    report.rejected = size
    for issue in exc.issues:
        where = ", ".join(issue.expression) or report.key
        severity = "warning" if issue.severity in ("warning", "information") else "error"
        report.findings.append(Finding(severity, issue.code, issue.diagnostics, where))


async def _write_feed(
    ctx: Context,
    session: WriteSession,
    feed: PractitionerFeed,
    report: FeedReport,
    vanished: Vanished,
) -> None:
    resources = sorted(feed.resources, key=lambda r: _ORDER.get(str(r.get("resourceType")), 3))
    slot_ids = {str(s.get("id")) for s in feed.slots}
    # The practitioner's stored Practitioner/Role/Schedule rows first, locked (PostgreSQL):
    # a racing ingest of the same practitioner waits here, then sees what the first wrote.
    # (A first ingest has no rows to lock: both insert, the loser gets Conflict, retries.)
    # The feed's slots in the same statement (one round trip). A racing ingest that waited
    # here does not see the slots the first one created (they were not in its snapshot): it
    # takes them for new, gets Conflict when it inserts them, and is retried whole.
    await session.prefetch(
        [(str(r.get("resourceType")), str(r.get("id"))) for r in resources]
        + [("Slot", i) for i in sorted(slot_ids)]
    )
    gone: list[str] = []
    if feed.window is not None and feed.schedule_ids and await _may_have_slots(ctx, session, feed):
        gone = [i for i in await _slots_in_window(session, feed) if i not in slot_ids]
    # read and locked in one statement per few hundred
    await session.prefetch([("Slot", i) for i in gone])
    booked = await _appointed(session, await _may_free(session, feed, gone))
    refs = PendingReferences()
    for resource in [*resources, *feed.slots]:
        res_type, res_id = str(resource.get("resourceType")), str(resource.get("id"))
        previous = await session.current(res_type, res_id)
        # Checked even when nothing is written: an unchanged answer would otherwise tell a
        # caller that may not write it what another's resource holds.
        access.require_change(ctx, "update", res_type, previous)
        if same(previous, resource):
            report.unchanged += 1
            continue
        if (
            res_type == "Slot"
            and resource.get("status") == "free"
            and previous is not None
            and _is_booked(previous, booked)
        ):
            report.unchanged += 1  # a booking wins over the vendor's stale "free"
            continue
        await _put(ctx, session, resource, previous, refs)
        if previous is None or previous.deleted:
            report.created += 1
        else:
            report.updated += 1
    for res_id in gone:
        previous = await session.current("Slot", res_id)
        if previous is None or previous.deleted or _is_booked(previous, booked):
            continue
        if vanished == "delete":
            access.require(ctx, "delete", "Slot")
            await write_version(
                ctx, session, None, res_type="Slot", res_id=res_id, previous=previous,
                method="DELETE", references=refs,
            )  # fmt: skip
        else:
            content = orjson.loads(previous.content)
            if content.get("status") == VANISHED_STATUS:
                continue
            await _put(ctx, session, _unavailable(content), previous, refs)
        report.removed += 1
    if ctx.referential_integrity:
        await refs.verify(session)


async def _put(
    ctx: Context,
    session: WriteSession,
    resource: FhirJson,
    previous: Stored | None,
    refs: PendingReferences,
) -> None:
    """An update (or create) as ``PUT Type/id`` would do it. A create is written as the
    store writes server-assigned ids (``POST``): buffered, all of the feed's in one
    statement, instead of one round trip each to catch a concurrent create of the same id
    at once; that race still ends in ``Conflict`` (at the flush), and the feed is retried
    whole."""
    res_type, res_id = str(resource.get("resourceType")), str(resource.get("id"))
    check_type(res_type)
    check_id(res_id)
    access.require(ctx, "update", res_type)
    body = check_body(res_type, resource, ctx.validator)
    await write_version(
        ctx, session, body, res_type=res_type, res_id=res_id, previous=previous,
        method="POST" if previous is None else "PUT", references=refs,
    )  # fmt: skip


def _unavailable(content: FhirJson) -> FhirJson:
    """A vanished slot marked ``busy-unavailable``. The SAS aggregator Slot profile admits
    only ``free`` slots (what is offered), so the marked slot no longer claims a profile; its
    labels stay (who may see it). The vendor offering it again restores the whole slot."""
    out = {**canonical(content), "status": VANISHED_STATUS}
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k != "profile"}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


async def _may_free(session: WriteSession, feed: PractitionerFeed, gone: list[str]) -> list[str]:
    """The stored Slots this feed would remove or set back to free: only they need the
    Appointment check (an unchanged feed skips that query)."""
    out = list(gone)
    for slot in feed.slots:
        if slot.get("status") == "free":
            previous = await session.current("Slot", str(slot.get("id")))  # prefetched
            if previous is not None and not previous.deleted and not same(previous, slot):
                out.append(str(slot.get("id")))
    return out


def _is_booked(stored: Stored, appointed: set[str]) -> bool:
    if stored.res_id in appointed:
        return True
    return bool(orjson.loads(stored.content).get("status") == BOOKED_STATUS)


async def _may_have_slots(ctx: Context, session: WriteSession, feed: PractitionerFeed) -> bool:
    """Whether a stored Slot may name one of the feed's Schedules. With referential
    integrity on, a Slot is only ever written when its Schedule has a row (a deleted
    Schedule keeps it), so a Schedule without a row (read and locked by ``prefetch``) has
    none: a first ingest skips the window query, which on a table growing faster than its
    statistics PostgreSQL may answer by reading every pair row."""
    if not ctx.referential_integrity:
        return True
    for schedule_id in feed.schedule_ids:
        if await session.current("Schedule", schedule_id) is not None:  # prefetched
            return True
    return False


async def _slots_in_window(session: WriteSession, feed: PractitionerFeed) -> list[str]:
    """Ids of the stored, current Slots of the feed's Schedules starting in its window."""
    assert feed.window is not None
    low, high = feed.window
    stmt = (
        select(_RES.c.res_id)
        .select_from(_PAIR.join(_RES, _RES.c.pk == _PAIR.c.res_pk))
        .where(
            and_(
                _PAIR.c.res_type == "Slot",
                _PAIR.c.param == "schedule+start",
                _PAIR.c.target_type == "Schedule",
                _PAIR.c.target_id.in_(feed.schedule_ids),
                _PAIR.c.low >= low,
                _PAIR.c.low < high,
                _RES.c.deleted.is_(False),
            )
        )
    )
    return sorted({row[0] for row in await session.fetch(stmt)})


async def _appointed(session: WriteSession, slot_ids: Sequence[str]) -> set[str]:
    """Which of these Slots a current Appointment names (booked, whatever the slot says)."""
    out: set[str] = set()
    if not slot_ids:
        return out
    ids = sorted(set(slot_ids))
    for start in range(0, len(ids), 1000):
        stmt = (
            select(_REF.c.target_id)
            .select_from(_REF.join(_RES, _RES.c.pk == _REF.c.res_pk))
            .where(
                and_(
                    _REF.c.res_type == "Appointment",
                    _REF.c.param == "slot",
                    _REF.c.target_type == "Slot",
                    _REF.c.target_id.in_(ids[start : start + 1000]),
                    _RES.c.deleted.is_(False),
                )
            )
        )
        out.update(row[0] for row in await session.fetch(stmt))
    return out


def findings_of(feed: PractitionerFeed, issues: Sequence[Any]) -> list[Finding]:
    """The mapper's issues about this practitioner."""
    return [Finding.of(i) for i in issues if i.practitioner == feed.key]
