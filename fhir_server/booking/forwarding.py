"""Where a booking of a slot owned elsewhere goes first (docs/forwarding.md).

The owner is asked BEFORE the write transaction, never inside it: a remote call must not
hold slot locks (PostgreSQL) or every writer (SQLite) for up to FHIR_FORWARD_DEADLINE.

``interactions/slot_booking.py`` sees, in the transaction, which slots an Appointment write
takes and leaves. When the ``Forwarder`` says none is remote (``concerns``) nothing changes.
Otherwise, unless this request's ``Asked`` already holds the owner's confirmation of that
very change, it raises ``NeedsOwner``: the transaction rolls back (nothing written), and
``interactions/owner_first.py`` asks the owner with no transaction open, records the
confirmation in ``Asked`` and runs the write again; the slots are checked again then (they
may have become busy meanwhile). If that write fails, the confirmations are undone at the
owner (``Forwarder.revert``, best effort).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.storage.port import Stored

# (identifier, status, start, end, slots taken, slots left): what the owner confirmed.
# Not the whole content: the booking completes the Appointment (operator, practitioner).
ChangeKey = tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]


class Forwarder(Protocol):
    def concerns(self, take: dict[str, Stored], leave: dict[str, Stored]) -> bool:
        """Whether any of these slots has a remote owner (no I/O)."""
        ...

    async def forward(
        self,
        appointment: dict[str, Any] | None,
        take: dict[str, Stored],
        leave: dict[str, Stored],
    ) -> None:
        """Return when the owner confirms (or the slots are local); raise a FhirError (409
        with the owner's reason) when it refuses: nothing is written then."""
        ...

    async def revert(
        self,
        appointment: dict[str, Any] | None,
        take: dict[str, Stored],
        leave: dict[str, Stored],
    ) -> None:
        """The owner confirmed ``forward`` but the local write failed: undo it there, best
        effort; never raises (what cannot be undone is logged for the operator)."""
        ...


@dataclass(frozen=True)
class Ask:
    """One change to put to an owner: the Appointment version and its slots."""

    appointment: dict[str, Any] | None
    take: dict[str, Stored]
    leave: dict[str, Stored]

    @property
    def key(self) -> ChangeKey:
        return change_key(self.appointment, self.take, self.leave)


def change_key(
    appointment: dict[str, Any] | None, take: dict[str, Stored], leave: dict[str, Stored]
) -> ChangeKey:
    first = ""
    content = appointment or {}
    for identifier in content.get("identifier") or ():
        if isinstance(identifier, dict):
            first = f"{identifier.get('system')}|{identifier.get('value')}"
            break
    return (
        first,
        str(content.get("status")),
        str(content.get("start")),
        str(content.get("end")),
        tuple(sorted(take)),
        tuple(sorted(leave)),
    )


class NeedsOwner(Exception):
    """Raised in the write transaction (so it rolls back) when an owner must be asked
    first; not a FhirError: only ``owner_first.run`` catches it."""

    def __init__(self, ask: Ask) -> None:
        super().__init__("the slot's owner must confirm first")
        self.ask = ask


@dataclass
class Asked:
    """Per request: the changes the owners confirmed before the write transaction."""

    confirmed: list[Ask] = field(default_factory=list)

    def holds(self, key: ChangeKey) -> bool:
        return any(a.key == key for a in self.confirmed)
