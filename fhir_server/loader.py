"""Load FHIR files into the store: Bundles, single resources and NDJSON.

Each file is loaded in one write transaction: a file with one bad resource is reported and
skipped whole, never half-loaded. Transaction/batch Bundles go through the transaction
interaction (so ``urn:uuid:`` references and conditional entries work); other resources are
written with update-as-create when they carry an id, create otherwise, through the same
interaction code as a PUT or POST, the current versions of a few hundred at a time read in
one statement first (``WriteSession.prefetch``). References are checked once per file
(``interactions/references.py``): resources of one file may reference each other in any
order, but a reference to a resource of a file loaded later fails unless the check is off
(``fhir-server load --no-check-references``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhir_server.core.errors import FhirError
from fhir_server.interactions import create, transaction, update
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences

SUFFIXES = (".json", ".ndjson")
_CHUNK = 500  # resources whose current versions are read together
Progress = Callable[[int], None]  # told how many more resources were written


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


def _is_transaction(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("resourceType") == "Bundle"
        and doc.get("type") in ("transaction", "batch")
    )


def _resources(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle" and not _is_transaction(doc):
        for entry in doc.get("entry", []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
    elif isinstance(doc, dict):
        yield doc
    else:
        raise ValueError("not a FHIR resource (expected a JSON object)")


def count_resources(path: Path) -> int:
    """How many resources ``load_file`` writes from ``path`` if it loads (0 when the file
    cannot be read: its load says why)."""
    try:
        return sum(
            len(doc.get("entry", [])) if _is_transaction(doc) else sum(1 for _ in _resources(doc))
            for doc in _documents(path)
        )
    except (ValueError, OSError):
        return 0


async def load_file(
    ctx: Context, path: Path, base_url: str = "urn:load", progress: Progress | None = None
) -> FileReport:
    """Load one file (see the module's docstring); ``progress`` hears of every resource
    written (a transaction Bundle's entries all at once), including those of a file that
    fails afterwards and is rolled back."""
    report = FileReport(path)
    advance = progress or (lambda _n: None)
    try:
        docs = list(_documents(path))
        # Nested sessions are not possible: a transaction Bundle is its own unit (below).
        plain = (r for doc in docs if not _is_transaction(doc) for r in _resources(doc))
        async with ctx.store.writing() as session:
            refs = PendingReferences()  # checked once the whole file is written
            while chunk := list(itertools.islice(plain, _CHUNK)):
                await session.prefetch(
                    [(str(r.get("resourceType")), r["id"]) for r in chunk if _has_id(r)]
                )
                for resource in chunk:
                    rtype = str(resource.get("resourceType"))
                    if _has_id(resource):
                        await update.update_in(
                            ctx, session, rtype, resource["id"], resource, references=refs
                        )
                    else:
                        await create.create_in(ctx, session, rtype, resource, references=refs)
                    report.resources += 1
                    advance(1)
            await refs.verify(session)
        for doc in docs:
            if _is_transaction(doc):
                if doc["type"] == "batch":
                    doc = {**doc, "type": "transaction"}  # a file is all or nothing
                await transaction.process(ctx, doc, base_url, return_resources=False)
                report.resources += len(doc.get("entry", []))
                advance(len(doc.get("entry", [])))
    except FhirError as exc:
        report.error = str(exc)
    except (ValueError, OSError) as exc:
        report.error = str(exc)
    return report


def _has_id(resource: dict[str, Any]) -> bool:
    return isinstance(resource.get("id"), str)
