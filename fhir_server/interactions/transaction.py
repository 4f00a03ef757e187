"""batch and transaction: https://hl7.org/fhir/R4/http.html#transaction.

A transaction runs in one database transaction: every entry succeeds or nothing is stored.
Entries run in the spec's order (DELETE, POST, PUT/PATCH, GET); ``urn:uuid:`` full URLs of
created resources are rewritten to ``Type/id`` everywhere they are referenced, and the
references of every entry are checked once, after the last entry ran (``references.py``):
an entry may reference a resource another entry writes, before or after it. A batch runs
each entry on its own and reports each entry's outcome.
"""

from __future__ import annotations

import base64
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_server.core import errors, json_input
from fhir_server.core.errors import FhirError, Issue
from fhir_server.core.fhirtime import format_instant
from fhir_server.core.outcomes import outcome
from fhir_server.interactions import (
    access,
    create,
    delete,
    owner_first,
    patch,
    read,
    search,
    update,
)
from fhir_server.interactions.bundles import bundle, etag, resource_fragment
from fhir_server.interactions.conditional import conditional_matches, update_target
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences
from fhir_server.storage.port import Stored, WriteSession
from fhir_server.validation.structure import structure_issues

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    res_type: str
    res_id: str | None
    query: str | None
    resource: Any
    request: dict[str, Any]
    full_url: str | None
    version: str | None = None
    error: FhirError | None = None  # a batch entry that cannot run, reported on its own


def _parse_url(url: str, base_url: str) -> tuple[str, str | None, str | None, str | None]:
    """``Type``, ``Type/id``, ``Type/id/_history/n``, ``Type?query`` (relative or on our base)."""
    if url.startswith(base_url + "/"):
        url = url[len(base_url) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise errors.incorrect(
            f"entry.request.url {url!r} is not on this server", code="not-supported"
        )
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise errors.incorrect("entry.request.url has no resource type", code="invalid")
    if len(segments) > 2 and not (len(segments) == 4 and segments[2] == "_history"):
        raise errors.incorrect(f"entry.request.url {url!r} is not supported", code="not-supported")
    res_id = segments[1] if len(segments) > 1 else None
    version = segments[3] if len(segments) == 4 else None
    return segments[0], res_id, parts.query or None, version


def _entries(body: Any, base_url: str) -> tuple[str, list[_Entry]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise errors.incorrect("the body must be a Bundle", code="invalid", expression=["Bundle"])
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise errors.incorrect(
            f"Bundle.type must be 'batch' or 'transaction', got {kind!r}",
            expression=["Bundle.type"],
        )
    raw_entries = body.get("entry", [])
    if not isinstance(raw_entries, list) or not all(isinstance(e, dict) for e in raw_entries):
        raise errors.incorrect(
            "Bundle.entry must be an array of objects",
            code="structure",
            expression=["Bundle.entry"],
        )
    # Check the envelope with the entries' resources taken out: each resource is checked
    # by its own interaction, with the entry's position in the error.
    shell = {
        **body,
        "entry": [{k: v for k, v in e.items() if k != "resource"} for e in raw_entries],
    }
    if not shell["entry"]:
        shell.pop("entry")
    issues = structure_issues(shell)
    if issues:
        raise errors.incorrect_issues(issues)
    out = []
    for i, raw in enumerate(raw_entries):
        request = raw.get("request")
        if not isinstance(request, dict) or "method" not in request or "url" not in request:
            raise errors.incorrect(
                "each entry needs request.method and request.url",
                code="required",
                expression=[f"Bundle.entry[{i}].request"],
            )
        method = str(request["method"]).upper()
        if method not in _ORDER:
            raise errors.incorrect(
                f"unsupported method {method}",
                code="not-supported",
                expression=[f"Bundle.entry[{i}].request.method"],
            )
        error = None
        try:
            res_type, res_id, query, version = _parse_url(str(request["url"]), base_url)
            if version is not None and method != "GET":
                raise errors.incorrect("only GET may name a version", code="not-supported")
        except FhirError as exc:
            if kind == "transaction":
                raise _at(exc, i) from exc
            res_type, res_id, query, version, error = "", None, None, None, exc
        out.append(
            _Entry(
                i,
                method,
                str(request["url"]),
                res_type,
                res_id,
                query,
                raw.get("resource"),
                request,
                raw.get("fullUrl"),
                version,
                error,
            )
        )
    return kind, out


def _at(exc: FhirError, index: int) -> FhirError:
    """The same error, its diagnostics prefixed with the entry it comes from."""
    exc.issues = [
        Issue(
            i.code,
            f"Bundle.entry[{index}]: {i.diagnostics}",
            i.severity,
            tuple(
                f"Bundle.entry[{index}].resource.{e.split('.', 1)[1]}"
                if "." in e
                else f"Bundle.entry[{index}]"
                for e in i.expression
            )
            or (f"Bundle.entry[{index}]",),
        )
        for i in exc.issues
    ]
    return exc


def _rewrite(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                mapping.get(v, v)
                if k == "reference" and isinstance(v, str)
                else _rewrite(v, mapping)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, mapping) for v in node]
    return node


def _response(
    stored: Stored | None, status: str, base_url: str, with_resource: bool
) -> dict[str, Any]:
    resp: dict[str, Any] = {"status": status}
    if stored is not None:
        resp["location"] = f"{stored.res_type}/{stored.res_id}/_history/{stored.version}"
        resp["etag"] = etag(stored)
        resp["lastModified"] = format_instant(stored.last_updated)
    entry: dict[str, Any] = {}
    if stored is not None:
        entry["fullUrl"] = f"{base_url}/{stored.res_type}/{stored.res_id}"
        if with_resource and not stored.deleted:
            entry["resource"] = resource_fragment(stored)
    entry["response"] = resp
    return entry


async def _assign_ids(ctx: Context, session: WriteSession, entries: list[_Entry]) -> dict[str, str]:
    """Decide the id of every created resource first, so references can be rewritten."""
    mapping: dict[str, str] = {}
    for e in entries:
        target: str | None = None
        if e.method == "POST" and e.res_id is None:
            cond = e.request.get("ifNoneExist")
            if cond:
                await session.lock_conditional(e.res_type)
                ids = await conditional_matches(ctx, session, e.res_type, str(cond))
                if len(ids) > 1:
                    raise _at(
                        errors.precondition_failed(
                            f"ifNoneExist '{cond}' matches several resources", code="duplicate"
                        ),
                        e.index,
                    )
                e.request["_match"] = ids[0] if ids else None
            e.res_id = e.request.get("_match") or str(uuid.uuid4())
            target = f"{e.res_type}/{e.res_id}"
        elif e.method == "PUT" and e.res_id is None and e.query:
            body_id = e.resource.get("id") if isinstance(e.resource, dict) else None
            try:
                found = await update_target(ctx, session, e.res_type, e.query, body_id)
            except FhirError as exc:
                raise _at(exc, e.index) from exc
            e.res_id = found.res_id
            if isinstance(e.resource, dict):
                e.resource = {**e.resource, "id": e.res_id}
            target = f"{e.res_type}/{e.res_id}"
        elif e.res_id is not None:
            target = f"{e.res_type}/{e.res_id}"
        if e.full_url and target:
            if e.full_url in mapping:
                raise _at(
                    errors.incorrect(f"fullUrl {e.full_url} appears twice", code="duplicate"),
                    e.index,
                )
            mapping[e.full_url] = target
    return mapping


async def _run(
    ctx: Context,
    session: WriteSession,
    e: _Entry,
    base_url: str,
    return_resources: bool,
    max_depth: int,
    refs: PendingReferences | None = None,
) -> dict[str, Any]:
    """Run one entry; ``refs`` collects its references (None: checked now, in a batch)."""
    if e.method == "POST":
        match = e.request.get("_match")
        if match:  # ifNoneExist found the resource: nothing is created
            existing = await session.current(e.res_type, match)
            if existing is not None and not access.visible_row(ctx, existing):
                existing = None  # cannot happen: the match was searched for this caller
            return _response(existing, "200 OK", base_url, return_resources)
        result = await create.create_in(
            ctx, session, e.res_type, e.resource, res_id=e.res_id, references=refs
        )
        return _response(result.stored, "201 Created", base_url, return_resources)
    if e.method == "PUT":
        if e.res_id is None:
            raise errors.incorrect("PUT needs Type/id or Type?query", code="invalid")
        if isinstance(e.resource, dict) and "id" not in e.resource and e.query:
            e.resource = {**e.resource, "id": e.res_id}
        result = await update.update_in(
            ctx,
            session,
            e.res_type,
            e.res_id,
            e.resource,
            if_match=e.request.get("ifMatch"),
            references=refs,
        )
        return _response(
            result.stored, "201 Created" if result.created else "200 OK", base_url, return_resources
        )
    if e.method == "PATCH":
        if e.res_id is None:
            raise errors.incorrect("PATCH needs Type/id", code="invalid")
        ops = _patch_operations(e.resource, max_depth)
        result = await patch.patch_in(
            ctx,
            session,
            e.res_type,
            e.res_id,
            ops,
            if_match=e.request.get("ifMatch"),
            references=refs,
            max_depth=max_depth,
        )
        return _response(result.stored, "200 OK", base_url, return_resources)
    if e.method == "DELETE":
        if e.res_id is not None:
            await delete.delete_in(
                ctx,
                session,
                e.res_type,
                e.res_id,
                if_match=e.request.get("ifMatch"),
                references=refs,
            )
        elif e.query:
            await delete.conditional_delete_in(ctx, session, e.res_type, e.query, references=refs)
        else:
            raise errors.incorrect("DELETE needs Type/id or Type?query", code="invalid")
        return {"response": {"status": "204 No Content"}}
    # GET / HEAD: read inside the transaction; vread and search read committed data.
    if e.res_id is None:
        req = search.SearchRequest(
            e.res_type, parse_qsl(e.query or "", keep_blank_values=True), base_url
        )
        found = await search.search(ctx, req)
        return {"resource": orjson.Fragment(found.body), "response": {"status": "200 OK"}}
    if e.version is not None:
        version = await read.vread(ctx, e.res_type, e.res_id, e.version)
        return _response(version, "200 OK", base_url, True)
    access.require(ctx, "read", e.res_type)
    current = await session.current(e.res_type, e.res_id)  # a write session reads every row
    if current is None or not access.visible_row(ctx, current):
        raise errors.not_found(f"{e.res_type}/{e.res_id} is not known")
    if current.deleted:
        raise errors.gone(f"{e.res_type}/{e.res_id} was deleted")
    return _response(current, "200 OK", base_url, True)


def _patch_operations(resource: Any, max_depth: int) -> Any:
    """In a Bundle a JSON Patch travels as a Binary resource (base64 ``data``)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            raw = base64.b64decode(str(resource.get("data", "")))
        except ValueError as exc:
            raise errors.incorrect(
                "the Binary of a PATCH entry is not a JSON Patch", code="structure"
            ) from exc
        # Decoded here, not by the API: the same depth limit as a request body.
        return json_input.parse(raw, max_depth, "the Binary of a PATCH entry")
    if isinstance(resource, list):
        return resource
    raise errors.incorrect("a PATCH entry carries a Binary with a JSON Patch", code="structure")


def _outcome_entry(exc: FhirError) -> dict[str, Any]:
    reason = {
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        410: "Gone",
        412: "Precondition Failed",
        422: "Unprocessable Entity",
    }.get(exc.status, "Error")
    return {
        "response": {
            "status": f"{exc.status} {reason}",
            "outcome": outcome(exc.issues),
        }
    }


def _entry_expressions(entries: list[_Entry]) -> Callable[[str, str], str]:
    """Where a written resource is in the Bundle, for the reference errors."""
    positions = {(e.res_type, e.res_id): e.index for e in entries if e.res_id is not None}

    def where(res_type: str, res_id: str) -> str:
        index = positions.get((res_type, res_id))
        return res_type if index is None else f"Bundle.entry[{index}].resource"

    return where


async def process(
    ctx: Context,
    body: Any,
    base_url: str,
    *,
    return_resources: bool = True,
    max_depth: int = json_input.MAX_DEPTH,
) -> bytes:
    """Runs a batch or transaction Bundle; ``max_depth`` bounds the JSON Patches it carries."""
    kind, entries = _entries(body, base_url)
    if kind == "transaction":
        runs: list[list[_Entry]] = [entries]

        async def write(ctx: Context) -> bytes:
            # a run again after asking an owner (owner_first.py): the entries parsed anew
            todo = runs.pop() if runs else _entries(body, base_url)[1]
            return await _transaction(ctx, todo, base_url, return_resources, max_depth)

        return await owner_first.run(ctx, write)
    responses: dict[int, dict[str, Any]] = {}
    for e in entries:
        if e.error is not None:
            responses[e.index] = _outcome_entry(e.error)
            continue
        try:
            responses[e.index] = await owner_first.run(
                ctx,
                functools.partial(
                    _batch_entry,
                    e=e,
                    base_url=base_url,
                    return_resources=return_resources,
                    max_depth=max_depth,
                ),
            )
        except FhirError as exc:
            responses[e.index] = _outcome_entry(exc)
    return bundle("batch-response", [responses[e.index] for e in entries])


async def _batch_entry(
    ctx: Context, *, e: _Entry, base_url: str, return_resources: bool, max_depth: int
) -> dict[str, Any]:
    async with ctx.store.writing(ctx.caller) as session:
        await _assign_ids(ctx, session, [e])
        return await _run(ctx, session, e, base_url, return_resources, max_depth)


async def _transaction(
    ctx: Context, entries: list[_Entry], base_url: str, return_resources: bool, max_depth: int
) -> bytes:
    responses: dict[int, dict[str, Any]] = {}
    async with ctx.store.writing(ctx.caller) as session:
        mapping = await _assign_ids(ctx, session, entries)
        for e in entries:
            if mapping and e.resource is not None:
                e.resource = _rewrite(e.resource, mapping)
        refs = PendingReferences()
        for e in sorted(entries, key=lambda x: _ORDER[x.method]):
            try:
                responses[e.index] = await _run(
                    ctx, session, e, base_url, return_resources, max_depth, refs
                )
            except FhirError as exc:
                raise _at(exc, e.index) from exc
        await refs.verify(session, _entry_expressions(entries))
    return bundle("transaction-response", [responses[e.index] for e in entries])
