"""The one builder of OperationOutcome resources (https://hl7.org/fhir/R4/operationoutcome.html).

Errors raised as ``FhirError`` are rendered through it by ``api.outcomes``; interactions use it
for outcomes that are not errors (a search's ignored parameters, ``_explain``, a batch entry).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.core.errors import Issue


def outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """The OperationOutcome resource holding ``issues``, as JSON-ready data."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def outcome_bytes(issues: Iterable[Issue]) -> bytes:
    """The same, serialised."""
    return orjson.dumps(outcome(issues))
