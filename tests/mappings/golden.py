"""Golden files of the mapping tests: a mapping result as plain JSON, compared with the file
reviewed by hand (``UPDATE_GOLDEN=1`` rewrites them; review the diff before committing)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mappings.contract import MappingResult

DATA = Path(__file__).parent / "data"
REFERENCE = Path(__file__).parents[2] / ".." / "shared" / "reference" / "vendors"


def as_json(result: MappingResult) -> dict[str, Any]:
    return {
        "feeds": [
            {
                "key": feed.key,
                "rpps": feed.rpps,
                "rejected": feed.rejected,
                "window": [t.isoformat() for t in feed.window] if feed.window else None,
                "resources": feed.resources,
                "slots": feed.slots,
            }
            for feed in result.feeds
        ],
        "issues": [asdict(issue) for issue in result.issues],
    }


def assert_golden(result: MappingResult, path: Path) -> None:
    got = as_json(result)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(path.read_text())


def every_resource(result: MappingResult) -> list[dict[str, Any]]:
    return [r for feed in result.feeds for r in (*feed.resources, *feed.slots)]
