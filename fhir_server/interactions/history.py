"""history at instance, type and system level: https://hl7.org/fhir/R4/http.html#history.

Newest first. ``_since`` (instant) keeps versions at or after it, ``_at`` up to it;
``_count`` pages, with an offset carried in the ``next``/``previous`` links.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from fhir_server.core import errors, fhirtime
from fhir_server.interactions import access
from fhir_server.interactions._resource import check_id, check_type
from fhir_server.interactions.context import Context
from fhir_server.storage.port import HistoryPage


@dataclass(frozen=True)
class HistoryResult:
    page: HistoryPage
    count: int
    offset: int


def _int(params: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise errors.incorrect(
            f"{name} must be a non-negative integer, got {raw!r}", expression=[name]
        )
    value = int(raw)
    return min(value, maximum) if maximum is not None else value


def _instant(params: Mapping[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return fhirtime.parse_range(raw.replace(" ", "+"))[0]
    except fhirtime.DateValueError as exc:
        raise errors.incorrect(f"{name}: {exc}", expression=[name]) from exc


async def history(
    ctx: Context, res_type: str | None, res_id: str | None, params: Mapping[str, str]
) -> HistoryResult:
    if res_type is not None:
        check_type(res_type)
        access.require(ctx, "history", res_type)  # system history: the visible rows only
    if res_id is not None:
        check_id(res_id)
    count = _int(params, "_count", ctx.search.default_count, ctx.search.max_count)
    offset = _int(params, "_offset", 0)
    page = await ctx.store.history(
        res_type=res_type,
        res_id=res_id,
        since=_instant(params, "_since"),
        at=_instant(params, "_at"),
        count=count,
        offset=offset,
        caller=ctx.caller,
    )
    if res_id is not None and page.total == 0:
        raise errors.not_found(f"{res_type}/{res_id} is not known")
    return HistoryResult(page, count, offset)
