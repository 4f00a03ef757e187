"""Golden files: a mapping's whole result (feeds with their resources and window, issues)
as JSON, compared with ``<input>.expected.json`` beside the input. ``GOLDEN_UPDATE=1``
rewrites them (then read the diff by hand before committing)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mappings.contract import MappingResult

DATA = Path(__file__).parent / "data"


def as_json(result: MappingResult) -> dict[str, Any]:
    return {
        "feeds": [
            {
                "key": feed.key,
                "rpps": feed.rpps,
                "rejected": feed.rejected,
                "window": [w.isoformat() for w in feed.window] if feed.window else None,
                "resources": feed.resources,
                "slots": feed.slots,
            }
            for feed in result.feeds
        ],
        "issues": [
            {
                "severity": i.severity,
                "code": i.code,
                "location": i.location,
                "practitioner": i.practitioner,
                "message": i.message,
            }
            for i in result.issues
        ],
    }


def check(result: MappingResult, source: Path) -> None:
    expected = source.with_name(source.name + ".expected.json")
    actual = as_json(result)
    if os.environ.get("GOLDEN_UPDATE") == "1":
        expected.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n")
    assert actual == json.loads(expected.read_text())
