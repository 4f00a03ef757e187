"""Generate the compact R4 tables the server needs to start offline.

Reads the official ``hl7.fhir.r4.core#4.0.1`` package from a FHIR package cache and writes:

* ``r4_search_parameters.json``: every SearchParameter whose base is a served type
  (or ``Resource``/``DomainResource``), reduced to code, type, expression (only the
  branches that apply to that type), targets, comparators and modifiers;
* ``r4_elements.json``: for each served resource type and every datatype they use, the
  elements with their FHIR types, maximum cardinality, minimum cardinality (``min``, only
  when >= 1) and, for ``code`` elements with a required binding whose ValueSet expands from
  the package's own CodeSystems, the allowed codes (``codes``). ``validation/structure.py``
  walks resources against it: JSON types, required elements, enumerated codes.

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


class _Terminology:
    """Expand the core package's ValueSets from its CodeSystems (enough for ``code`` enums).

    Only whole systems and concept lists are expanded; a filter, an external system
    (``urn:ietf:bcp:13``, ISO 4217...) or a CodeSystem that is not ``complete`` makes the
    ValueSet unexpandable (``None``): the element then gets no ``codes`` and is left to the
    profile validator's terminology."""

    def __init__(self, package_dir: Path) -> None:
        self.value_sets: dict[str, dict[str, Any]] = {}
        self.code_systems: dict[str, dict[str, Any]] = {}
        for path in package_dir.glob("ValueSet-*.json"):
            vs = json.loads(path.read_text(encoding="utf-8"))
            self.value_sets[vs["url"]] = vs
        for path in package_dir.glob("CodeSystem-*.json"):
            cs = json.loads(path.read_text(encoding="utf-8"))
            self.code_systems[cs["url"]] = cs

    def _system_codes(self, url: str) -> list[str] | None:
        cs = self.code_systems.get(url)
        if cs is None or cs.get("content") != "complete":
            return None
        out: list[str] = []

        def walk(concepts: list[dict[str, Any]]) -> None:
            for concept in concepts:
                out.append(concept["code"])
                walk(concept.get("concept", []))

        walk(cs.get("concept", []))
        return out

    def _part(self, part: dict[str, Any]) -> list[str] | None:
        if part.get("filter"):
            return None
        codes: list[str] | None = None
        if "concept" in part:
            codes = [c["code"] for c in part["concept"]]
        elif "system" in part:
            codes = self._system_codes(part["system"])
            if codes is None:
                return None
        for url in part.get("valueSet", []):
            inner = self.expand(url)
            if inner is None:
                return None
            codes = inner if codes is None else [c for c in codes if c in set(inner)]
        return codes

    def expand(self, url: str) -> list[str] | None:
        vs = self.value_sets.get(url.split("|", 1)[0])
        if vs is None or "compose" not in vs:
            return None
        codes: list[str] = []
        for part in vs["compose"].get("include", []):
            found = self._part(part)
            if found is None:
                return None
            codes.extend(c for c in found if c not in codes)
        for part in vs["compose"].get("exclude", []):
            found = self._part(part)
            if found is None:
                return None
            codes = [c for c in codes if c not in found]
        return codes or None


def elements(package_dir: Path) -> dict[str, dict[str, Any]]:
    """Elements of every served type and of the datatypes reachable from them."""
    out: dict[str, dict[str, Any]] = {}
    terminology = _Terminology(package_dir)
    todo = list(SERVED_TYPES)
    primitive: set[str] = set()
    resources: set[str] = set()
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
        if sd.get("kind") == "resource":
            resources.add(name)
        table: dict[str, Any] = {}
        # This package build adds elements that are not R4 (Meta.project, Meta.account...,
        # HealthcareService.offeredIn "backported from R5"): in its snapshot, declared by
        # the type itself, but absent from the differential. Real 4.0.1 snapshots never do
        # that, and the R4 models reject them, so they are left out (with their children).
        declared = {e["path"] for e in sd.get("differential", {}).get("element", [])}
        foreign: list[str] = []
        for el in sd["snapshot"]["element"]:
            path: str = el["path"]
            if "." not in path:
                continue
            if el.get("base", {}).get("path") == path and path not in declared:
                foreign.append(path)
            if any(path == f or path.startswith(f + ".") for f in foreign):
                continue
            rel = path.split(".", 1)[1]
            entry: dict[str, Any] = {"max": el.get("max", "1")}
            if el.get("min", 0) >= 1:
                entry["min"] = el["min"]
            if el.get("contentReference"):
                entry["ref"] = el["contentReference"].split(".", 1)[1]
            else:
                codes = _type_codes(el)
                entry["types"] = codes
                binding = el.get("binding", {})
                if codes == ["code"] and binding.get("strength") == "required":
                    allowed = terminology.expand(binding.get("valueSet", ""))
                    if allowed is not None:
                        entry["codes"] = allowed
                for code in codes:
                    if code not in ("Resource",) and code not in out and code != name:
                        todo.append(code)
            table[rel] = entry
        out[name] = table
    return {  # type: ignore[dict-item]
        "primitives": sorted(primitive),
        "resources": sorted(resources),
        "types": dict(sorted(out.items())),
    }


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
