"""FHIR package manifest and the generated R4 tables (see ``generate.py``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@cache
def r4_search_parameters() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(
        (HERE / "r4_search_parameters.json").read_text(encoding="utf-8")
    )
    return data


@cache
def r4_elements() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / "r4_elements.json").read_text(encoding="utf-8"))
    return data
