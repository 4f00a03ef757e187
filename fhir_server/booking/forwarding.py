"""Where a booking of a slot owned elsewhere goes first (helper ``forward`` implements it).

``interactions/slot_booking.py`` asks ``Context.forwarder`` (None: every slot is ours) once
per Appointment write, before anything is written, with the slots the write takes and
leaves. It decides whether their owner is remote and, if so, books there first.
"""

from __future__ import annotations

from typing import Any, Protocol

from fhir_server.storage.port import Stored


class Forwarder(Protocol):
    async def forward(
        self,
        appointment: dict[str, Any] | None,
        take: dict[str, Stored],
        leave: dict[str, Stored],
    ) -> None:
        """Return when the owner confirms (or the slots are local); raise a FhirError (409
        with the owner's reason) when it refuses: nothing is written then."""
        ...
