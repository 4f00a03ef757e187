"""Binding checks: codes, Codings and CodeableConcepts against the bound ValueSet."""

from __future__ import annotations

from typing import Any

from fhir_server.validation.compiled import NOTHING, Binding
from fhir_server.validation.context import Run
from fhir_server.validation.terminology import Expansion, Terminology

_CODE_TYPES = frozenset({"code", "string", "uri", "url", "canonical"})


def check_binding(
    run: Run, terminology: Terminology, binding: Binding, code: str, item: Any, at: str
) -> None:
    """Is the value (code, Coding, CodeableConcept) in the bound ValueSet? Required: an
    error; extensible and preferred: a warning for a code of a system the ValueSet uses;
    a ValueSet that is not available: a warning, nothing checked."""
    if code not in _CODE_TYPES and code not in ("Coding", "CodeableConcept"):
        return
    expansion = binding.expansion
    if expansion is NOTHING:
        expansion = binding.expansion = terminology.expansion(binding.value_set)
    strength, vs = binding.strength, binding.value_set
    if expansion is None:
        if strength in ("required", "extensible"):
            run.add("warning", "not-found", at, "vs-unknown", vs=vs, strength=strength)
        return
    severity = "error" if strength == "required" else "warning"
    if code in _CODE_TYPES:
        if isinstance(item, str) and expansion.has_code(item) is False:
            run.add(severity, "code-invalid", at, "code-plain", code=item, vs=vs, strength=strength)
        return
    if code == "Coding":
        if isinstance(item, dict):
            _coding(run, expansion, item, at, severity, binding)
        return
    codings = item.get("coding") if isinstance(item, dict) else None
    codings = [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
    if not codings:
        if strength == "required":
            run.error("code-invalid", at, "code-missing", vs=vs)
        return
    results = [_coding_result(expansion, c) for c in codings]
    if any(r is None or r == "ok" for r in results):
        return
    if strength != "required" and "code" not in results:
        return  # codes from other systems extend an extensible or preferred binding
    if len(codings) == 1:
        _coding(run, expansion, codings[0], f"{at}.coding[0]", severity, binding)
    else:
        run.add(severity, "code-invalid", at, "code-none", vs=vs, strength=strength)


def _coding(
    run: Run,
    expansion: Expansion,
    coding: dict[str, Any],
    at: str,
    severity: str,
    binding: Binding,
) -> None:
    result = _coding_result(expansion, coding)
    if result == "system" and binding.strength == "required":
        run.add(
            severity,
            "code-invalid",
            f"{at}.system",
            "code-system",
            system=coding.get("system"),
            vs=binding.value_set,
            strength=binding.strength,
            systems=", ".join(expansion.systems) or "-",
        )
    elif result == "code":
        run.add(
            severity,
            "code-invalid",
            f"{at}.code",
            "code-code",
            code=coding.get("code"),
            system=coding.get("system") or "",
            vs=binding.value_set,
            strength=binding.strength,
        )


def _coding_result(expansion: Expansion, coding: dict[str, Any]) -> str | None:
    """ "ok", "system" (not in the ValueSet), "code" (system in, code not) or None (unknown)."""
    code, system = coding.get("code"), coding.get("system")
    if not isinstance(code, str):
        return None
    if not isinstance(system, str):
        found = expansion.has_code(code)
        return None if found is None else "ok" if found else "code"
    if not expansion.has_system(system):
        return "system"
    found = expansion.contains(system, code)
    return None if found is None else "ok" if found else "code"
