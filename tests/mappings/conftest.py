"""Mapping tests: the profile validator of tests/validation (mapped resources must validate
with no error against the SAS profiles) and a few helpers."""

from __future__ import annotations

from typing import Any

from tests.validation.conftest import conformance, errors, validator

__all__ = ["conformance", "validation_errors", "validator"]


def validation_errors(validator: Any, resource: dict[str, Any]) -> list[str]:
    """The error messages of ``resource`` against the profiles it claims."""
    return [f"{i.expression}: {i.diagnostics}" for i in errors(validator.validate(resource))]
