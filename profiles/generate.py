"""Generate the compact R4 tables the server needs to start offline.

Reads the official ``hl7.fhir.r4.core#4.0.1`` package from a FHIR package cache and writes:

* ``r4_search_parameters.json``: every SearchParameter whose base is a served type
  (or ``Resource``/``DomainResource``), reduced to code, type, expression (only the
  branches that apply to that type), targets, comparators and modifiers;
* ``r4_elements.json``: for each served resource type and every datatype they use, the
  elements with their FHIR types and maximum cardinality (used to check JSON primitive
  types strictly, which the ``fhir.resources`` models do not do).

Run it again when the served types change; review the diff::

    python -m profiles.generate --package-path ../shared/reference/fhir-packages
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

SERVED_TYPES = (
    "Appointment",
    "AuditEvent",
    "Bundle",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Schedule",
    "Slot",
)
CORE_PACKAGE = "hl7.fhir.r4.core#4.0.1"
HERE = Path(__file__).resolve().parent


def _load(package_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((package_dir / name).read_text(encoding="utf-8"))
    return data


def _branches_for(expression: str, resource_type: str) -> str:
    """Keep only the ``|`` branches of a multi-type expression that start with the type."""
    parts = [p.strip() for p in expression.split("|")]
    mine = [
        p
        for p in parts
        if p.startswith(f"{resource_type}.")
        or p.startswith(f"({resource_type}.")
        or p == resource_type
        or p.startswith("Resource.")
    ]
    return " | ".join(mine)


def search_parameters(package_dir: Path) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {t: {} for t in (*SERVED_TYPES, "Resource")}
    for path in sorted(package_dir.glob("SearchParameter-*.json")):
        sp = json.loads(path.read_text(encoding="utf-8"))
        for base in sp.get("base", []):
            if base in ("Resource", "DomainResource"):
                owners = ["Resource"]
            elif base in SERVED_TYPES:
                owners = [base]
            else:
                continue
            for owner in owners:
                expression = sp.get("expression") or ""
                if owner != "Resource":
                    expression = _branches_for(expression, owner)
                entry: dict[str, Any] = {
                    "type": sp["type"],
                    "expression": expression,
                    "url": sp["url"],
                }
                if sp.get("target"):
                    entry["target"] = sorted(sp["target"])
                if sp.get("comparator"):
                    entry["comparator"] = sp["comparator"]
                if sp.get("modifier"):
                    entry["modifier"] = sp["modifier"]
                if sp.get("multipleOr") is False:
                    entry["multipleOr"] = False
                table[owner].setdefault(sp["code"], entry)
    return {k: dict(sorted(v.items())) for k, v in table.items()}


def _type_codes(element: dict[str, Any]) -> list[str]:
    codes = []
    for t in element.get("type", []):
        code = t.get("code", "")
        if code.startswith("http://hl7.org/fhirpath/System."):
            # The FHIR type of id/extension.url/value is carried by an extension.
            for ext in t.get("extension", []):
                if ext.get("url", "").endswith("structuredefinition-fhir-type"):
                    code = ext["valueUrl"]
            code = {"http://hl7.org/fhirpath/System.String": "string"}.get(code, code)
        codes.append(code)
    return codes


def elements(package_dir: Path) -> dict[str, dict[str, Any]]:
    """Elements of every served type and of the datatypes reachable from them."""
    out: dict[str, dict[str, Any]] = {}
    todo = list(SERVED_TYPES)
    primitive: set[str] = set()
    while todo:
        name = todo.pop()
        if name in out or name in primitive:
            continue
        file = package_dir / f"StructureDefinition-{name}.json"
        if not file.exists():
            continue
        sd = _load(package_dir, file.name)
        if sd.get("kind") == "primitive-type":
            primitive.add(name)
            continue
        table: dict[str, Any] = {}
        for el in sd["snapshot"]["element"]:
            path: str = el["path"]
            if "." not in path:
                continue
            rel = path.split(".", 1)[1]
            entry: dict[str, Any] = {"max": el.get("max", "1")}
            if el.get("contentReference"):
                entry["ref"] = el["contentReference"].split(".", 1)[1]
            else:
                codes = _type_codes(el)
                entry["types"] = codes
                for code in codes:
                    if code not in ("Resource",) and code not in out and code != name:
                        todo.append(code)
            table[rel] = entry
        out[name] = table
    return {"primitives": sorted(primitive), "types": dict(sorted(out.items()))}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--package-path",
        default=os.environ.get("FHIR_PACKAGE_PATH", str(Path.home() / ".fhir" / "packages")),
    )
    args = parser.parse_args()
    package_dir = Path(args.package_path) / CORE_PACKAGE / "package"
    if not package_dir.is_dir():
        raise SystemExit(f"{CORE_PACKAGE} not found under {args.package_path}")
    dump = {"sort_keys": False, "ensure_ascii": False, "indent": 1}
    (HERE / "r4_search_parameters.json").write_text(
        json.dumps(search_parameters(package_dir), **dump) + "\n",
        encoding="utf-8",  # type: ignore[arg-type]
    )
    (HERE / "r4_elements.json").write_text(
        json.dumps(elements(package_dir), **dump) + "\n",
        encoding="utf-8",  # type: ignore[arg-type]
    )
    print("wrote r4_search_parameters.json and r4_elements.json")


if __name__ == "__main__":
    main()
