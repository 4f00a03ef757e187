"""Ask a remote slot's owner before the write transaction, never inside it
(``booking/forwarding.py``, docs/forwarding.md).

``run`` wraps one write interaction (create, update, patch, delete, a transaction, one
batch entry). Without a forwarder it is the interaction itself. With one, the interaction
runs; if it meets a change an owner must confirm (``NeedsOwner``, raised before anything is
written) its transaction has rolled back: the owner is asked now, no transaction open, and
the interaction runs again with the confirmation in ``ctx.asked``. If any later step fails
(a 409 because the slot became busy here meanwhile, a database error, the commit), every
confirmation is undone at its owner and the error re-raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from fhir_server.booking.forwarding import Asked, Forwarder, NeedsOwner
from fhir_server.core import errors
from fhir_server.interactions.context import Context

T = TypeVar("T")
# owners asked per request at most (a transaction booking several remote appointments)
MAX_ASKS = 20


async def run(ctx: Context, write: Callable[[Context], Awaitable[T]]) -> T:
    forwarder = ctx.forwarder
    if forwarder is None or ctx.asked is not None:
        return await write(ctx)  # no remote owner known, or already inside ``run``
    asked = Asked()
    ctx = replace(ctx, asked=asked)
    try:
        for _ in range(MAX_ASKS + 1):
            try:
                return await write(ctx)
            except NeedsOwner as need:
                await forwarder.forward(need.ask.appointment, need.ask.take, need.ask.leave)
                asked.confirmed.append(need.ask)
        raise errors.unprocessable(
            f"a request may book at most {MAX_ASKS} slots of remote owners",
            code="too-costly",
        )
    except BaseException:
        await _revert(forwarder, asked)
        raise


async def _revert(forwarder: Forwarder, asked: Asked) -> None:
    for ask in reversed(asked.confirmed):
        await forwarder.revert(ask.appointment, ask.take, ask.leave)
