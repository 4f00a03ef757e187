"""Booking on this server: an Appointment write takes and leaves its Slots in the SAME
write transaction (the decisions are ``booking/rules.py``'s; this module reads, locks and
writes).

``write_version`` calls ``apply`` before storing every Appointment version (create,
update, patch, delete, transaction entries). The slots are read with ``session.current``,
which locks them: ``SELECT ... FOR UPDATE`` on PostgreSQL (a concurrent booking of the same
slot waits, then reads it ``busy`` and gets a 409), and SQLite's write transaction is
serial already (``BEGIN IMMEDIATE``). A slot's new version is written like any write, with
its index rows, so its ``watch`` keys move and every process's availability cache drops
what it knew of that Schedule (``storage/schema.py``, ``idx_watch``).

The slot versions are written by the server for the booking, not by the caller: a regulator
may not write Slots, yet its booking makes them busy. The slot keeps its owner and labels.

The party. ``apply`` returns the Appointment version's *party*: the owner of the first slot
it references (its vendor, who then reads it: ``auth/policy.py``), read in this
transaction; the previous version's when no slot changes. The party's own status changes
(cancelled, noshow... at the practice) take and leave slots as a booking's do: its cancel
of a future appointment frees the slot, its re-booking of a cancelled one takes it (409 if
taken meanwhile).

Remote owners. ``ctx.forwarder`` (None: every slot is ours) says whether the slots a write
takes and leaves have a remote owner. If so the owner must have confirmed this change
BEFORE the transaction (``ctx.asked``); otherwise ``NeedsOwner`` rolls it back and
``owner_first.run`` asks the owner with no transaction open, then writes again
(``booking/forwarding.py``).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from fhir_server.booking import forwarding, patient, rules, sas_content
from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM
from fhir_server.core.fhirtime import format_instant, utcnow
from fhir_server.interactions import access
from fhir_server.interactions.context import Context
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.storage import schema
from fhir_server.storage.port import Stored, WriteSession

# Who books here: their Appointment writes take and leave slots. A vendor pushes the
# appointments it made itself (INT_R03: its own agenda already says busy, and its Slot writes
# are the truth of its slots), an admin corrects records, the server loads them: their
# Appointments are stored as sent and change no slot.
BOOKING_ROLES = frozenset({"regulator", "platform"})
# ...and whose Appointments must reference a slot (400 otherwise)
_MUST_BOOK = frozenset({"regulator"})


async def apply(
    ctx: Context,
    session: WriteSession,
    appointment: dict[str, Any] | None,
    previous: Stored | None,
) -> str | None:
    """Take and leave the slots this Appointment version changes, or raise (409/422/400)
    before anything is written; the version's party."""
    kept = previous.party if previous is not None else None
    if ctx.caller is SYSTEM:
        return kept
    # Appointments are cancelled, never deleted, by clients (auth/policy.py): an admin's
    # deletion removes a record booked here, and gives its time back.
    books = ctx.role in BOOKING_ROLES or access.is_party(ctx, previous)
    if not books and not (appointment is None and ctx.role == "admin"):
        return kept
    return await _apply(ctx, session, appointment, previous)


async def _apply(
    ctx: Context,
    session: WriteSession,
    appointment: dict[str, Any] | None,
    previous: Stored | None,
) -> str | None:
    if appointment is not None and ctx.role in _MUST_BOOK and not rules.slot_ids(appointment):
        raise errors.incorrect(
            f"a {ctx.role}'s Appointment books a Slot: Appointment.slot is required",
            code="required",
            expression=["Appointment.slot"],
        )
    if appointment is not None:  # the minimal patient data, or none (422)
        patient.check(appointment, utcnow().astimezone(ctx.timezone).date())
    before = _content(previous)
    change = rules.change(before, appointment)
    now = utcnow()
    kept = [s for s in rules.held(appointment) if s not in change.take]
    # One lock order for every transaction (sorted ids): two bookings never wait on each other.
    stored: dict[str, Stored | None] = {}
    owners: dict[str, str | None] = {}  # of every slot read, deleted ones too
    for slot_id in sorted({*change.take, *change.leave, *kept}):
        current = await session.current("Slot", slot_id)
        stored[slot_id] = current if current is not None and not current.deleted else None
        if current is not None:
            owners[slot_id] = current.owner
    states: dict[str, rules.SlotState] = {}
    for slot_id, row in stored.items():
        if row is not None:
            states[slot_id] = rules.slot_state(slot_id, orjson.loads(row.content))
    for slot_id in change.take:
        rules.check_takeable(slot_id, states.get(slot_id), now)
    if appointment is not None and rules.holds(appointment):
        moved = change.take or _times(before) != _times(appointment)
        if moved:
            for slot_id in kept:
                if slot_id not in states:
                    raise errors.conflict(
                        f"Slot/{slot_id} does not exist (unknown or deleted)", code="not-found"
                    )
            rules.check_fits(appointment, [states[s] for s in rules.held(appointment)])
    party = await _party(session, appointment, previous, owners)
    if change.empty:
        return party
    # the party is the slots' owner telling what happened in its agenda: nobody to ask
    if ctx.forwarder is not None and not access.is_party(ctx, previous):
        _owner_first(
            ctx,
            appointment,
            {s: r for s in change.take if (r := stored[s]) is not None},
            {s: r for s in change.leave if (r := stored[s]) is not None},
        )
    for slot_id in change.take:
        row = stored[slot_id]
        assert row is not None  # check_takeable passed
        await _write_status(ctx, session, row, "busy")
    if appointment is not None and change.take:
        await _complete(ctx, session, appointment, states[change.take[0]])
    for slot_id in change.leave:
        row = stored[slot_id]
        state = states.get(slot_id)
        if row is not None and state is not None and rules.frees(state, now):
            await _write_status(ctx, session, row, "free")
    return party


async def _party(
    session: WriteSession,
    appointment: dict[str, Any] | None,
    previous: Stored | None,
    owners: dict[str, str | None],
) -> str | None:
    """The owner of the Appointment's first slot (one Schedule: one owner); the previous
    version's when its slots are the same and were not read (a deletion keeps it)."""
    kept = previous.party if previous is not None else None
    slots = rules.slot_ids(appointment)
    if not slots:
        return kept
    if slots[0] in owners:
        return owners[slots[0]]
    if previous is not None and slots == rules.slot_ids(_content(previous)):
        return kept
    res = schema.resources
    rows = await session.fetch(
        select(res.c.owner).where(res.c.res_type == "Slot", res.c.res_id == slots[0])
    )
    return rows[0].owner if rows else None


def _owner_first(
    ctx: Context,
    appointment: dict[str, Any] | None,
    take: dict[str, Stored],
    leave: dict[str, Stored],
) -> None:
    """Slots of remote owners: go on only with their confirmation of this very change,
    obtained before this transaction (``owner_first.run``); else roll back to get it."""
    assert ctx.forwarder is not None
    if not ctx.forwarder.concerns(take, leave):
        return  # our own slots: booked here alone
    ask = forwarding.Ask(appointment, take, leave)
    if ctx.asked is not None and ctx.asked.holds(ask.key):
        return  # confirmed by the owner; the checks above ran again on the locked rows
    raise forwarding.NeedsOwner(ask)  # never caught in the transaction: nothing is written


async def _complete(
    ctx: Context, session: WriteSession, appointment: dict[str, Any], slot: rules.SlotState
) -> None:
    """FrAppointmentSAS content the booking left out (``booking/sas_content.py``): the
    booking person as operator, the slot's practitioner by IDNPS (from its Schedule)."""
    if ctx.caller.user_id:
        sas_content.add_operator(appointment, sas_content.idnps_of_person(ctx.caller.user_id))
    if slot.schedule is None or not slot.schedule.startswith("Schedule/"):
        return
    schedule = await _peek(session, "Schedule", slot.schedule.removeprefix("Schedule/"))
    for actor in (schedule or {}).get("actor") or ():
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if not isinstance(ref, str) or not ref.startswith("Practitioner/"):
            continue
        practitioner = await _peek(session, "Practitioner", ref.split("/", 1)[1])
        idnps = sas_content.practitioner_idnps(practitioner or {})
        if idnps:
            sas_content.add_practitioner(appointment, idnps)
            return


async def _peek(session: WriteSession, res_type: str, res_id: str) -> dict[str, Any] | None:
    """A current resource read in this transaction without locking it: bookings of one
    Schedule must not queue on its row (nor wait for a second pooled connection while
    holding their slot locks)."""
    res = schema.resources
    rows = await session.fetch(
        select(res.c.content).where(
            res.c.res_type == res_type, res.c.res_id == res_id, res.c.deleted.is_(False)
        )
    )
    if not rows:
        return None
    content: dict[str, Any] = orjson.loads(rows[0].content)
    return content


def _content(stored: Stored | None) -> dict[str, Any] | None:
    if stored is None or stored.deleted:
        return None
    content: dict[str, Any] = orjson.loads(stored.content)
    return content


def _times(appointment: dict[str, Any] | None) -> tuple[Any, Any]:
    if appointment is None:
        return (None, None)
    return (appointment.get("start"), appointment.get("end"))


async def _write_status(ctx: Context, session: WriteSession, previous: Stored, status: str) -> None:
    """The slot's next version with ``status``, its index rows and its owner kept."""
    content: dict[str, Any] = orjson.loads(previous.content)
    now = utcnow()
    version = previous.version + 1
    meta = dict(content.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(now, ctx.timezone)
    content["meta"] = meta
    content["status"] = status
    body = orjson.dumps(content)
    stored = Stored(
        res_type="Slot",
        res_id=previous.res_id,
        version=version,
        last_updated=now,
        deleted=False,
        content=body,
        method="PUT",
        owner=previous.owner,
        labels=access.labels_of(content, previous),
    )
    await session.put(stored, index_resource(ctx.registry, orjson.loads(body)), previous)
    for hook in ctx.write_hooks:  # the outboxes see the slot change like any write
        await hook.wrote(session, stored, previous)
