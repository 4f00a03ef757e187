"""The write hook that resumes a Subscription's held notifications (docs/subscriptions.md):
when a client writes a Subscription that is ``active`` (back from ``error``, or changed),
its pending messages are due at once and its failure count starts again, in the write's
own transaction; the local rest-hook sender is woken once it commits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from fhir_server.delivery.queue import hurry
from fhir_server.storage.port import Stored, WriteSession
from fhir_server.subscriptions.failures import cleared
from fhir_server.subscriptions.model import TYPE, channel_of


@dataclass
class Resume:
    wake: Callable[[], None] | None = None  # the local rest-hook sender's (app.py)

    async def wrote(self, session: WriteSession, stored: Stored, previous: Stored | None) -> None:
        if stored.res_type != TYPE or stored.deleted or previous is None:
            return  # a new Subscription has nothing queued yet
        try:
            status = orjson.loads(stored.content).get("status")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if status != "active":
            return
        await session.execute(cleared(stored.res_id))
        if await hurry(session, channel_of(stored.res_id)) and self.wake is not None:
            session.after_commit(self.wake)
