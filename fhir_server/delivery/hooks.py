"""What the write path calls after each version it writes (``Context.write_hooks``):
a hook may add rows in the same transaction (the outbox) and wake a local worker once the
transaction commits (``session.after_commit``)."""

from __future__ import annotations

from typing import Protocol

from fhir_server.storage.port import Stored, WriteSession


class WriteHook(Protocol):
    async def wrote(self, session: WriteSession, stored: Stored, previous: Stored | None) -> None:
        """``stored`` was just written in ``session`` (``previous``: the version it
        replaces). Raising aborts the write: hooks must only fail when the transaction
        should."""
        ...
