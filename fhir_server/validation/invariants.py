"""Invariants (``ElementDefinition.constraint``): native checks and FHIRPath.

The base R4 invariants that apply to nearly every element (``ele-1``, ``ext-1``, ``dom-2``
to ``dom-6``, ``ref-1``, ``txt-1``/``txt-2``) and those of the types the SAS exchanges use
(``bdl-*``, ``cpt-2``, ``att-1``, ``per-1``, ``org-1``, ``app-*``) are written in Python:
``fhirpathpy`` takes about half a millisecond per evaluation, and lacks ``hasValue()`` and
``htmlChecks()``. A native check is used only when the expression is the exact R4 text; a
profile that rewrites one gets FHIRPath. ``tests/validation/test_invariants.py`` checks each
native check against ``fhirpathpy`` on sample values.

Every other invariant is parsed once per distinct expression (cached) and evaluated with
``fhirpathpy`` on the element, with ``%resource`` and ``%rootResource`` set and the element
path as the base (so choice types resolve). An expression that cannot be parsed or
evaluated gives ``None``: the validator reports a warning naming the invariant, never a
crash. An empty result counts as satisfied (FHIRPath comparisons of values of different
precision are empty: not a proof of a violation).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from fhir_server.core import fhirtime
from fhir_server.validation.compiled import Check, Constraint, Element

if TYPE_CHECKING:
    from fhir_server.validation.validator import Frame


def _norm(expression: str) -> str:
    return " ".join(expression.split())


def _ele_1(item: Any, frame: Frame, element: Element) -> bool:
    if isinstance(item, dict):
        return any(k != "id" for k in item)
    return item is not None and item != [] and item != {}


def _ext_1(item: Any, frame: Frame, element: Element) -> bool:
    if not isinstance(item, dict):
        return True
    has_ext = bool(item.get("extension"))
    has_value = any(k.startswith("value") for k in item)
    return has_ext != has_value


def _contained(item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, dict):
        return []
    value = item.get("contained")
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


def _dom_2(item: Any, frame: Frame, element: Element) -> bool:
    return not any(c.get("contained") for c in _contained(item))


def _strings(value: Any, out: set[str]) -> set[str]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


def _dom_3(item: Any, frame: Frame, element: Element) -> bool:
    contained = _contained(item)
    if not contained:
        return True
    # References, canonicals, uris and urls anywhere in the resource: every string is a
    # superset of those, so nothing referenced is ever reported.
    refs = _strings({k: v for k, v in item.items() if k != "contained"}, set())
    for c in contained:
        refs |= _strings(c, set())
    for c in contained:
        cid = c.get("id")
        if isinstance(cid, str) and f"#{cid}" in refs:
            continue
        if "#" in _strings(c, set()):  # refers to its container
            continue
        return False
    return True


def _dom_4(item: Any, frame: Frame, element: Element) -> bool:
    for c in _contained(item):
        meta = c.get("meta")
        if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
            return False
    return True


def _dom_5(item: Any, frame: Frame, element: Element) -> bool:
    for c in _contained(item):
        meta = c.get("meta")
        if isinstance(meta, dict) and meta.get("security"):
            return False
    return True


def _dom_6(item: Any, frame: Frame, element: Element) -> bool:
    text = item.get("text") if isinstance(item, dict) else None
    return isinstance(text, dict) and "div" in text


def _ref_1(item: Any, frame: Frame, element: Element) -> bool:
    ref = item.get("reference") if isinstance(item, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#") or ref == "#":
        return True
    return ref[1:] in frame.root_contained_ids()


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else None


def _entries(item: Any) -> list[Any]:
    entries = _get(item, "entry")
    return entries if isinstance(entries, list) else []


def _bdl_1(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "total") is None or _get(item, "type") in ("searchset", "history")


def _bdl_2(item: Any, frame: Frame, element: Element) -> bool:
    searched = any(isinstance(e, dict) and "search" in e for e in _entries(item))
    return not searched or _get(item, "type") == "searchset"


def _bdl_3(item: Any, frame: Frame, element: Element) -> bool:
    want = _get(frame.resource, "type") in ("batch", "transaction", "history")
    return all(isinstance(e, dict) and ("request" in e) == want for e in _entries(item))


def _bdl_4(item: Any, frame: Frame, element: Element) -> bool:
    want = _get(frame.resource, "type") in ("batch-response", "transaction-response", "history")
    return all(isinstance(e, dict) and ("response" in e) == want for e in _entries(item))


def _bdl_5(item: Any, frame: Frame, element: Element) -> bool:
    return isinstance(item, dict) and any(k in item for k in ("resource", "request", "response"))


def _bdl_7(item: Any, frame: Frame, element: Element) -> bool | None:
    if _get(item, "type") == "history":
        return True
    seen = set()
    for e in _entries(item):
        full_url = _get(e, "fullUrl")
        if full_url is None:
            continue
        version = _get(_get(_get(e, "resource"), "meta"), "versionId")
        key = (full_url, version)
        if not isinstance(full_url, str) or not isinstance(version, str | None):
            return None
        if key in seen:
            return False
        seen.add(key)
    return True


def _bdl_8(item: Any, frame: Frame, element: Element) -> bool:
    full_url = _get(item, "fullUrl")
    return not isinstance(full_url, str) or "/_history/" not in full_url


def _bdl_9(item: Any, frame: Frame, element: Element) -> bool:
    identifier = _get(item, "identifier")
    return _get(item, "type") != "document" or (
        _get(identifier, "system") is not None and _get(identifier, "value") is not None
    )


def _bdl_10(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "type") != "document" or isinstance(_get(item, "timestamp"), str)


def _first_resource_is(item: Any, kind: str) -> bool:
    entries = _entries(item)
    return bool(entries) and _get(_get(entries[0], "resource"), "resourceType") == kind


def _bdl_11(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "type") != "document" or _first_resource_is(item, "Composition")


def _bdl_12(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "type") != "message" or _first_resource_is(item, "MessageHeader")


def _cpt_2(item: Any, frame: Frame, element: Element) -> bool:
    return not isinstance(item, dict) or "value" not in item or "system" in item


def _att_1(item: Any, frame: Frame, element: Element) -> bool:
    return not isinstance(item, dict) or "data" not in item or "contentType" in item


def _org_1(item: Any, frame: Frame, element: Element) -> bool:
    return isinstance(item, dict) and bool(item.get("identifier") or item.get("name"))


def _per_1(item: Any, frame: Frame, element: Element) -> bool | None:
    start, end = _get(item, "start"), _get(item, "end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    try:
        low_start, _ = fhirtime.parse_range(start)
        low_end, high_end = fhirtime.parse_range(end)
    except ValueError:
        return True  # a bad date is reported by the format check
    if len(start) == len(end):
        return low_start <= low_end
    return low_start < high_end  # other precisions: only a start after the whole end fails


def _app_1(item: Any, frame: Frame, element: Element) -> bool:
    return isinstance(item, dict) and ("type" in item or "actor" in item)


def _app_2(item: Any, frame: Frame, element: Element) -> bool:
    return not isinstance(item, dict) or ("start" in item) == ("end" in item)


def _app_3(item: Any, frame: Frame, element: Element) -> bool:
    if not isinstance(item, dict) or ("start" in item and "end" in item):
        return True
    return item.get("status") in ("proposed", "cancelled", "waitlist")


def _app_4(item: Any, frame: Frame, element: Element) -> bool:
    if not isinstance(item, dict) or "cancelationReason" not in item:
        return True
    return item.get("status") in ("noshow", "cancelled")


def _always(item: Any, frame: Frame, element: Element) -> bool:
    return True  # txt-1/txt-2: XHTML rules are not checked (see the module docstring)


_DOM_3 = (
    "contained.where((('#'+id in (%resource.descendants().reference | "
    "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
    "%resource.descendants().as(url))) or descendants().where(reference = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"
)
_NATIVE: dict[str, Check] = {
    _norm("hasValue() or (children().count() > id.count())"): _ele_1,
    _norm("hasValue() or (children().count() > id.count()) or $this is Parameters"): _ele_1,
    _norm("extension.exists() != value.exists()"): _ext_1,
    _norm("contained.contained.empty()"): _dom_2,
    _norm(_DOM_3): _dom_3,
    _norm(
        "contained.where(((id.exists() and ('#'+id in (%resource.descendants().reference | "
        "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
        "%resource.descendants().as(url)))) or descendants().where(reference = '#').exists() "
        "or descendants().where(as(canonical) = '#').exists() or "
        "descendants().where(as(uri) = '#').exists()).not()).trace('unmatched', id).empty()"
    ): _dom_3,
    _norm("contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"): _dom_4,
    _norm("contained.meta.security.empty()"): _dom_5,
    _norm("text.`div`.exists()"): _dom_6,
    _norm(
        "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
        "%rootResource.contained.id.trace('ids'))"
    ): _ref_1,
    "htmlChecks()": _always,
    # Bundle, ContactPoint, Attachment, Period, Organization and Appointment: the invariants
    # of the SAS resources, written out for speed (fhirpathpy takes ~0.5 ms each).
    "total.empty() or (type = 'searchset') or (type = 'history')": _bdl_1,
    "entry.search.empty() or (type = 'searchset')": _bdl_2,
    _norm(
        "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = "
        "'transaction' or %resource.type = 'history'))"
    ): _bdl_3,
    _norm(
        "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type "
        "= 'transaction-response' or %resource.type = 'history'))"
    ): _bdl_4,
    "resource.exists() or request.exists() or response.exists()": _bdl_5,
    _norm(
        "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta."
        "versionId).isDistinct()"
    ): _bdl_7,
    "fullUrl.exists() implies fullUrl.contains('/_history/').not()": _bdl_8,
    _norm(
        "type = 'document' implies (identifier.system.exists() and identifier.value.exists())"
    ): _bdl_9,
    "type = 'document' implies (timestamp.hasValue())": _bdl_10,
    "type = 'document' implies entry.first().resource.is(Composition)": _bdl_11,
    "type = 'message' implies entry.first().resource.is(MessageHeader)": _bdl_12,
    "value.empty() or system.exists()": _cpt_2,
    "data.empty() or contentType.exists()": _att_1,
    "(identifier.count() + name.count()) > 0": _org_1,
    "start.hasValue().not() or end.hasValue().not() or (start <= end)": _per_1,
    "type.exists() or actor.exists()": _app_1,
    "start.exists() = end.exists()": _app_2,
    _norm(
        "(start.exists() and end.exists()) or (status in ('proposed' | 'cancelled' | 'waitlist'))"
    ): _app_3,
    _norm(
        "Appointment.cancelationReason.exists() implies (Appointment.status='noshow' or "
        "Appointment.status='cancelled')"
    ): _app_4,
}


def _has_value(inputs: list[Any]) -> list[bool]:
    return [len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict)]


_OPTIONS: dict[str, Any] = {
    "traceFn": lambda *args: None,  # trace() would print to stdout
    "userInvocationTable": {
        "hasValue": {"fn": _has_value, "arity": {0: []}},
        "htmlChecks": {"fn": lambda inputs: [True], "arity": {0: []}},
    },
}


@cache
def _engine() -> tuple[Any, Any, Any]:
    # Imported lazily: fhirpathpy pulls its ANTLR parser and model tables in.
    from fhirpathpy import apply_parsed_path
    from fhirpathpy.engine.nodes import ResourceNode
    from fhirpathpy.models import models

    return apply_parsed_path, ResourceNode, models["r4"]


def _parse(expression: str) -> Any:
    """``fhirpathpy.parser.parse``, but a syntax error raises: fhirpathpy's own listener
    ignores them and returns a tree for what it could read."""
    # ANTLR's runtime (a fhirpathpy dependency) has no type information.
    from antlr4 import CommonTokenStream, InputStream, Token  # type: ignore[import-untyped]
    from antlr4.error.ErrorListener import ErrorListener  # type: ignore[import-untyped]
    from antlr4.tree.Tree import ParseTreeWalker  # type: ignore[import-untyped]
    from fhirpathpy.parser.ASTPathListener import ASTPathListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class Strict(ErrorListener):  # type: ignore[misc]
        def syntaxError(self, *args: Any) -> None:  # ANTLR's method name
            raise ValueError(f"FHIRPath syntax error: {args[-2]}")

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(Strict())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(Strict())
    tree = parser.expression()
    if tokens.LA(1) != Token.EOF:
        raise ValueError("FHIRPath syntax error: unexpected text at the end")
    listener = ASTPathListener()  # type: ignore[no-untyped-call]
    ParseTreeWalker().walk(listener, tree)
    return listener.parentStack[0]


@cache
def _parsed(expression: str) -> Any:
    """The parse tree, or the exception that parsing raised (cached either way)."""
    try:
        return _parse(expression)
    except Exception as exc:  # ANTLR and fhirpathpy raise plain Exception subclasses
        return exc


def fhirpath_check(expression: str) -> Check:
    def check(item: Any, frame: Frame, element: Element) -> bool | None:
        node = _parsed(expression)
        if isinstance(node, Exception):
            return None
        apply, resource_node, model = _engine()
        env = {"resource": frame.resource, "rootResource": frame.root}
        # A resource is given as is: with a base path, fhirpathpy no longer matches the
        # leading type name of "Appointment.status = ...".
        is_resource = isinstance(item, dict) and "resourceType" in item
        data = item if is_resource else resource_node.create_node(item, element.path)
        try:
            result = apply(data, node, env, model, _OPTIONS)
        except Exception:  # any failure inside fhirpathpy: "could not evaluate"
            return None
        if not isinstance(result, list) or not result:
            return True
        if len(result) == 1 and isinstance(result[0], bool):
            return result[0]
        return None  # not a boolean: the expression is not a usable invariant

    return check


# ele-1 ("a value or children") is what the walk itself checks on every element: null
# values and empty objects are reported there, so the invariant is not run again.
_BUILT_IN = frozenset({_ele_1})


def compile_constraint(raw: dict[str, Any]) -> Constraint | None:
    key, expression = raw.get("key"), raw.get("expression")
    if not isinstance(key, str) or not isinstance(expression, str):
        return None
    if _NATIVE.get(_norm(expression)) in _BUILT_IN:
        return None
    best = any(
        isinstance(e, dict)
        and str(e.get("url", "")).endswith("elementdefinition-bestpractice")
        and e.get("valueBoolean") is True
        for e in raw.get("extension") or ()
    )
    severity = "warning" if best or raw.get("severity") == "warning" else "error"
    native = _NATIVE.get(_norm(expression))
    return Constraint(
        key=key,
        severity=severity,
        human=str(raw.get("human") or key),
        expression=expression,
        check=native if native is not None else fhirpath_check(expression),
        best_practice=best or key == "dom-6",
    )


def supplement(
    key: str,
    expression: str,
    human: str,
    human_fr: str,
    severity: str = "error",
    check: Callable[[Any], bool] | None = None,
) -> Constraint:
    """An invariant added by this server (not in the profile), native when ``check`` is
    given (a test on the element's value)."""
    if check is not None:
        native = check

        def run(item: Any, frame: Frame, element: Element) -> bool | None:
            return native(item)

        chosen: Check = run
    else:
        chosen = fhirpath_check(expression)
    return Constraint(key, severity, human, expression, chosen, False, human_fr)
