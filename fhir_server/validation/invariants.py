"""Invariants (``ElementDefinition.constraint``): native checks and FHIRPath.

An invariant whose expression is the exact R4 text of one in ``natives.NATIVE`` runs in
Python; a profile that rewrites one gets FHIRPath. Every other invariant is parsed once per
distinct expression (cached) and evaluated with ``fhirpathpy`` on the element, with
``%resource`` and ``%rootResource`` set and the element path as the base (so choice types
resolve). An expression that cannot be parsed or evaluated gives ``None``: the validator
reports a warning naming the invariant, never a crash. An empty result counts as satisfied
(FHIRPath comparisons of values of different precision are empty: not a proof of a
violation).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from fhir_server.validation.compiled import Check, Constraint, Element
from fhir_server.validation.natives import NATIVE, ele_1, norm

if TYPE_CHECKING:
    from fhir_server.validation.context import Frame


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
_BUILT_IN = frozenset({ele_1})


def compile_constraint(raw: dict[str, Any]) -> Constraint | None:
    key, expression = raw.get("key"), raw.get("expression")
    if not isinstance(key, str) or not isinstance(expression, str):
        return None
    if NATIVE.get(norm(expression)) in _BUILT_IN:
        return None
    best = any(
        isinstance(e, dict)
        and str(e.get("url", "")).endswith("elementdefinition-bestpractice")
        and e.get("valueBoolean") is True
        for e in raw.get("extension") or ()
    )
    severity = "warning" if best or raw.get("severity") == "warning" else "error"
    native = NATIVE.get(norm(expression))
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
