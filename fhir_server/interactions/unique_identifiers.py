"""One active resource per identifier, for the types of ``FHIR_UNIQUE_IDENTIFIERS``.

The SAS regulator-account flow (INT_R02, ``docs/api.md``) identifies an account by its
identifier (IDNPS national id or SAS technical UUID) and its test kit states the rule: one
active account per identifier; a POST of an identifier held by an active account is refused,
and an identifier becomes free for another account once its holder is deactivated
(``active = false``). So: a write of an *active* resource (``active`` not ``false``) of such
a type fails with 422 ``duplicate`` when another current, active resource of the type has an
identifier with the same ``system`` and ``value``. Identifiers without a system or a value
are not checked (they name nothing globally). Inactive resources are not checked and do not
block. Types without an ``active`` search parameter count every current resource as active.

The check runs in the write's database transaction under the type's conditional lock
(``WriteSession.lock_conditional``), so two racing writes of one identifier cannot both win;
the search also sees the earlier entries of the same transaction.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core import errors
from fhir_server.core.errors import Issue
from fhir_server.interactions.context import Context
from fhir_server.search.query.parse import escape
from fhir_server.search.query.run import search_ids
from fhir_server.storage.port import WriteSession


def is_active(resource: dict[str, Any]) -> bool:
    return resource.get("active") is not False


def _identifiers(resource: dict[str, Any]) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    raw = resource.get("identifier")
    for i, ident in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if not (isinstance(system, str) and isinstance(value, str) and system and value):
            continue
        if all((system, value) != (s, v) for _, s, v in out):
            out.append((i, system, value))
    return out


async def holders(
    ctx: Context, session: WriteSession, res_type: str, system: str, value: str, *, but: str
) -> list[str]:
    """Ids of the current active resources of ``res_type`` other than ``but`` holding
    ``system|value`` (at most one: callers only need to know whether there is any)."""
    pairs = [("identifier", f"{escape(system)}|{escape(value)}"), ("_id:not", but)]
    if ctx.registry.get(res_type, "active") is not None:
        pairs.append(("active:not", "false"))
    pairs.append(("_count", "1"))
    ids, _ = await search_ids(session, ctx.registry, res_type, pairs, default_tz=ctx.timezone)
    return ids


async def check_unique_identifiers(
    ctx: Context, session: WriteSession, res_type: str, res_id: str, resource: dict[str, Any]
) -> None:
    """422 ``duplicate`` naming each identifier another active resource already holds."""
    if res_type not in ctx.unique_identifiers or not is_active(resource):
        return
    idents = _identifiers(resource)
    if not idents:
        return
    await session.lock_conditional(res_type)
    issues = []
    for index, system, value in idents:
        found = await holders(ctx, session, res_type, system, value, but=res_id)
        if found:
            issues.append(
                Issue(
                    "duplicate",
                    f"the identifier {system}|{value} is already held by the active "
                    f"{res_type}/{found[0]}: deactivate it (active = false) or update it "
                    f"(PUT {res_type}?identifier={system}|{value})",
                    expression=(f"{res_type}.identifier[{index}]",),
                )
            )
    if issues:
        raise errors.unprocessable_issues(issues)
