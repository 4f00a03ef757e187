"""Load FHIR files into the store: Bundles, single resources and NDJSON.

Each file is loaded in one write transaction: a file with one bad resource is reported and
skipped whole, never half-loaded. Transaction/batch Bundles go through the transaction
interaction (so ``urn:uuid:`` references and conditional entries work); other resources are
written with update-as-create when they carry an id, create otherwise. References are
checked once per file (``interactions/references.py``): resources of one file may reference
each other in any order, but a reference to a resource of a file loaded later fails unless
the check is off (``fhir-server load --no-check-references``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhir_server.core.errors import FhirError
from fhir_server.interactions import create, transaction, update
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences

SUFFIXES = (".json", ".ndjson")


@dataclass
class FileReport:
    path: Path
    resources: int = 0
    error: str | None = None


def files_under(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        else:
            out.append(path)
    return out


def _documents(path: Path) -> Iterator[Any]:
    raw = path.read_bytes()
    if path.suffix == ".ndjson":
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: not JSON ({exc})") from exc
    else:
        try:
            yield orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from exc


def _resources(doc: Any) -> Iterator[dict[str, Any]]:
    if (
        isinstance(doc, dict)
        and doc.get("resourceType") == "Bundle"
        and doc.get("type") not in ("transaction", "batch")
    ):
        for entry in doc.get("entry", []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
    elif isinstance(doc, dict):
        yield doc
    else:
        raise ValueError("not a FHIR resource (expected a JSON object)")


async def load_file(ctx: Context, path: Path, base_url: str = "urn:load") -> FileReport:
    report = FileReport(path)
    try:
        docs = list(_documents(path))
        async with ctx.store.writing() as session:
            refs = PendingReferences()  # checked once the whole file is written
            for doc in docs:
                if (
                    isinstance(doc, dict)
                    and doc.get("resourceType") == "Bundle"
                    and doc.get("type") in ("transaction", "batch")
                ):
                    # Nested sessions are not possible: a transaction Bundle is its own unit.
                    continue
                for resource in _resources(doc):
                    rtype = str(resource.get("resourceType"))
                    if isinstance(resource.get("id"), str):
                        await update.update_in(
                            ctx, session, rtype, resource["id"], resource, references=refs
                        )
                    else:
                        await create.create_in(ctx, session, rtype, resource, references=refs)
                    report.resources += 1
            await refs.verify(session)
        for doc in docs:
            if (
                isinstance(doc, dict)
                and doc.get("resourceType") == "Bundle"
                and doc.get("type") in ("transaction", "batch")
            ):
                if doc["type"] == "batch":
                    doc = {**doc, "type": "transaction"}  # a file is all or nothing
                await transaction.process(ctx, doc, base_url, return_resources=False)
                report.resources += len(doc.get("entry", []))
    except FhirError as exc:
        report.error = str(exc)
    except (ValueError, OSError) as exc:
        report.error = str(exc)
    return report
