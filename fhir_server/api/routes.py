"""The FHIR REST routes: parse the request, call one interaction, render. No SQL, no rules.

Each route is declared with the FHIR interaction code it implements; the
CapabilityStatement is computed from this table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fhir_server.api import http
from fhir_server.api.authn import Authenticator
from fhir_server.core import errors
from fhir_server.core.outcomes import outcome_bytes
from fhir_server.interactions import (
    capabilities,
    create,
    delete,
    history,
    idempotency,
    patch,
    read,
    search,
    transaction,
    update,
    validate,
)
from fhir_server.interactions.bundles import bundle, history_entry
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings


@dataclass(frozen=True)
class Wiring:
    ctx: Context
    settings: Settings
    authn: Authenticator | None = None  # None: every request acts as ctx.who


async def wiring(request: Request) -> Wiring:
    """The app's wiring, its context acting for the authenticated caller (401/403 raised
    here, before the route reads anything)."""
    value: Wiring = request.app.state.wiring
    if value.authn is None:
        return value
    caller = await value.authn.caller(request, value.ctx)
    if caller == value.ctx.who:  # FHIR_AUTH=none: nothing to change on the hot path
        return value
    return replace(value, ctx=value.ctx.acting_for(caller))


async def public_wiring(request: Request) -> Wiring:
    """For what anyone may read without credentials (the CapabilityStatement)."""
    value: Wiring = request.app.state.wiring
    return value


Wired = Annotated[Wiring, Depends(wiring)]
PublicWired = Annotated[Wiring, Depends(public_wiring)]
Handler = Callable[..., Awaitable[Response]]
ROUTES: list[tuple[str, str, str, Handler]] = []  # (method, path, interaction code, handler)
# System operations served by routers of their own (api/ingest.py…), which add their code
# here when they are wired, so the CapabilityStatement lists them.
OPERATIONS: set[str] = set()


def route(method: str, path: str, interaction: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, path, interaction, handler))
        return handler

    return register


def _software_version() -> str:
    try:
        return version("sas-fhir-server")
    except PackageNotFoundError:
        return "0.0.0"


def _query(request: Request) -> str:
    return request.url.query


def _history_response(result: history.HistoryResult, base: str, path: str) -> Response:
    page = result.page

    def link(offset: int) -> str:
        return f"{base}/{path}?_count={result.count}&_offset={offset}"

    links = [("self", link(result.offset))]
    if result.offset + result.count < page.total:
        links.append(("next", link(result.offset + result.count)))
    if result.offset:
        links.append(("previous", link(max(0, result.offset - result.count))))
    entries = [history_entry(base, s) for s in page.entries]
    return http.fhir_response(bundle("history", entries, total=page.total, links=links))


@route("GET", "/metadata", "capabilities")
async def get_metadata(request: Request, w: PublicWired) -> Response:
    base = http.base_url(request, w.settings)
    body = capabilities.capability_statement(
        w.ctx,
        base,
        [code for _, _, code, _ in ROUTES] + sorted(OPERATIONS),
        "sas-fhir-server",
        _software_version(),
    )
    return http.fhir_response(body)


@route("POST", "/", "transaction")
async def post_bundle(request: Request, w: Wired) -> Response:
    body = await http.read_body(request, w.settings)
    base = http.base_url(request, w.settings)
    result = await transaction.process(
        w.ctx,
        body,
        base,
        return_resources=http.prefer_return(request) != "minimal",
        max_depth=w.settings.max_json_depth,
    )
    return http.fhir_response(result)


ROUTES.append(("POST", "/", "batch", post_bundle))


@route("GET", "/_history", "history-system")
async def get_system_history(request: Request, w: Wired) -> Response:
    result = await history.history(w.ctx, None, None, dict(request.query_params))
    return _history_response(result, http.base_url(request, w.settings), "_history")


@route("GET", "/{res_type}/_history", "history-type")
async def get_type_history(res_type: str, request: Request, w: Wired) -> Response:
    result = await history.history(w.ctx, res_type, None, dict(request.query_params))
    return _history_response(result, http.base_url(request, w.settings), f"{res_type}/_history")


@route("GET", "/{res_type}/{res_id}/_history", "history-instance")
async def get_instance_history(res_type: str, res_id: str, request: Request, w: Wired) -> Response:
    result = await history.history(w.ctx, res_type, res_id, dict(request.query_params))
    base = http.base_url(request, w.settings)
    return _history_response(result, base, f"{res_type}/{res_id}/_history")


@route("GET", "/{res_type}/{res_id}/_history/{version_id}", "vread")
async def get_version(res_type: str, res_id: str, version_id: str, w: Wired) -> Response:
    stored = await read.vread(w.ctx, res_type, res_id, version_id)
    return http.fhir_response(stored.content, headers=http.version_headers(stored))


def _strict(request: Request) -> bool:
    return "handling=strict" in request.headers.get("prefer", "").replace(" ", "")


async def _search(
    request: Request, w: Wired, res_type: str, pairs: list[tuple[str, str]], raw: str | None
) -> Response:
    base = http.base_url(request, w.settings)
    req = search.SearchRequest(res_type, pairs, base, _strict(request), raw_query=raw)
    result = await search.search(w.ctx, req)
    return http.fhir_response(result.body)


@route("GET", "/{res_type}", "search-type")
async def get_search(res_type: str, request: Request, w: Wired) -> Response:
    raw = _query(request)
    return await _search(request, w, res_type, parse_qsl(raw, keep_blank_values=True), raw)


@route("POST", "/{res_type}/_search", "search-type")
async def post_search(res_type: str, request: Request, w: Wired) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media != "application/x-www-form-urlencoded":
        raise errors.unsupported_media_type("POST _search takes application/x-www-form-urlencoded")
    form = (await request.body()).decode("utf-8", errors="replace")
    pairs = parse_qsl(_query(request), keep_blank_values=True) + parse_qsl(
        form, keep_blank_values=True
    )
    return await _search(request, w, res_type, pairs, None)


async def _validate(request: Request, w: Wired, res_type: str, res_id: str | None) -> Response:
    body = await http.read_body(request, w.settings)
    lang = request.headers.get("accept-language", "en").split(",")[0].strip() or "en"
    req = validate.ValidateRequest(
        res_type,
        body,
        res_id,
        request.query_params.get("mode"),
        request.query_params.get("profile"),
        lang,
    )
    return http.fhir_response(outcome_bytes(await validate.validate(w.ctx, req)))


@route("POST", "/{res_type}/$validate", "validate")
async def post_validate(res_type: str, request: Request, w: Wired) -> Response:
    return await _validate(request, w, res_type, None)


@route("POST", "/{res_type}/{res_id}/$validate", "validate")
async def post_validate_instance(
    res_type: str, res_id: str, request: Request, w: Wired
) -> Response:
    return await _validate(request, w, res_type, res_id)


@route("GET", "/{res_type}/{res_id}", "read")
async def get_resource(res_type: str, res_id: str, request: Request, w: Wired) -> Response:
    stored = await read.read(w.ctx, res_type, res_id)
    headers = http.version_headers(stored)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return http.fhir_response(stored.content, headers=headers)


@route("POST", "/{res_type}", "create")
async def post_resource(res_type: str, request: Request, w: Wired) -> Response:
    body = await http.read_body(request, w.settings)
    if_none_exist = request.headers.get("if-none-exist")
    key = request.headers.get("idempotency-key")
    idempotent = None
    if key is not None:
        lifetime = timedelta(hours=w.settings.idempotency_key_hours)
        idempotent = idempotency.request_of(key, res_type, body, if_none_exist, lifetime)
    result = await create.create(
        w.ctx, res_type, body, if_none_exist=if_none_exist, idempotent=idempotent
    )
    base = http.base_url(request, w.settings)
    response = http.write_response(
        request, result.stored, 201 if result.created else 200, base, location=result.created
    )
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@route("PUT", "/{res_type}/{res_id}", "update")
async def put_resource(res_type: str, res_id: str, request: Request, w: Wired) -> Response:
    body = await http.read_body(request, w.settings)
    result = await update.update(
        w.ctx, res_type, res_id, body, if_match=request.headers.get("if-match")
    )
    base = http.base_url(request, w.settings)
    return http.write_response(
        request, result.stored, 201 if result.created else 200, base, location=True
    )


@route("PUT", "/{res_type}", "update")
async def put_conditional(res_type: str, request: Request, w: Wired) -> Response:
    if not _query(request):
        raise errors.method_not_allowed("PUT on a type needs search criteria (conditional update)")
    body = await http.read_body(request, w.settings)
    result = await update.conditional_update(
        w.ctx, res_type, _query(request), body, if_match=request.headers.get("if-match")
    )
    base = http.base_url(request, w.settings)
    return http.write_response(
        request, result.stored, 201 if result.created else 200, base, location=True
    )


@route("PATCH", "/{res_type}/{res_id}", "patch")
async def patch_resource(res_type: str, res_id: str, request: Request, w: Wired) -> Response:
    operations = await http.read_body(request, w.settings, http.PATCH_TYPES)
    result = await patch.patch(
        w.ctx,
        res_type,
        res_id,
        operations,
        if_match=request.headers.get("if-match"),
        max_depth=w.settings.max_json_depth,
    )
    base = http.base_url(request, w.settings)
    return http.write_response(request, result.stored, 200, base, location=False)


@route("DELETE", "/{res_type}/{res_id}", "delete")
async def delete_resource(res_type: str, res_id: str, request: Request, w: Wired) -> Response:
    stored = await delete.delete(w.ctx, res_type, res_id, if_match=request.headers.get("if-match"))
    headers = {"ETag": f'W/"{stored.version}"'} if stored else {}
    return Response(status_code=204, headers=headers)


@route("DELETE", "/{res_type}", "delete")
async def delete_conditional(res_type: str, request: Request, w: Wired) -> Response:
    if not _query(request):
        raise errors.method_not_allowed(
            "DELETE on a type needs search criteria (conditional delete)"
        )
    await delete.conditional_delete(w.ctx, res_type, _query(request))
    return Response(status_code=204)


def router() -> APIRouter:
    api = APIRouter(dependencies=[Depends(_accept)])
    seen: set[tuple[str, str]] = set()
    for method, path, _code, handler in ROUTES:
        if (method, path) in seen:
            continue
        seen.add((method, path))
        api.add_api_route(path, handler, methods=[method], response_class=Response)
    return api


async def _accept(request: Request) -> None:
    http.check_accept(request)


__all__ = ["ROUTES", "Wiring", "router"]
