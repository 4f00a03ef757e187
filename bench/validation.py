"""Profile validation micro-benchmark: validations per second on one core.

Loads the packages (``ans.fhir.fr.sas#1.1.0`` + R4 core from the package cache, the NOS
folder), compiles the SAS profiles, then validates in a loop, in process, single thread:

- ``slot``: a SAS Slot claiming ``FrSlotAgregateur`` (the package example
  ``Slot-ExampleSlotPSIndiv1``), the issue's goal being >= 5,000/s;
- ``slot-cpts``: a CPTS Slot (slices with an extension, pattern discriminator);
- ``role``: a PractitionerRole whose contained Location is validated against
  ``FrLocationAgregateur``;
- ``bundle``: the PS search Bundle example (12 entries, each against its profile);
- ``batch-1000``: 1,000 distinct Slots (ids and times vary), as in a transaction;
- ``structure``: ``validation.structure.structure_issues`` on the same Slot (the base R4
  walk: JSON types, required elements, required-bound codes, choice types), for comparison;
- ``r4b-model``: the ``fhir.resources`` R4B model on that Slot (``structure.model_issues``),
  the pass ``structure_issues`` ran after the walk until 2026-11-23 and no longer runs on
  served types: what the walk saves;
- ``structure@REV`` (with ``--structure-baseline REV``, e.g. ``736257a``): ``structure.py``
  as it was at that git revision, on the same Slot, for a before/after in one run.

Each figure is the best of ``--repeat`` rounds of ``--seconds`` (the machine may be shared:
the load average is printed). Process CPU time is reported too. Nothing is written.

    python bench/validation.py
    python bench/validation.py --package-path ~/.fhir/packages --seconds 2 --repeat 5 --pin 0
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fhir_server.validation.packages import load_conformance  # noqa: E402
from fhir_server.validation.structure import model_issues, structure_issues  # noqa: E402
from fhir_server.validation.supplements import sas_supplements  # noqa: E402
from fhir_server.validation.validator import Validator  # noqa: E402

REFERENCE = HERE.parent.parent / "shared" / "reference"
SAS = "ans.fhir.fr.sas#1.1.0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    default_cache = os.environ.get("FHIR_PACKAGE_PATH") or str(REFERENCE / "fhir-packages")
    p.add_argument("--package-path", type=Path, default=Path(default_cache))
    p.add_argument("--nos", type=Path, default=REFERENCE / "nos", help="loose NOS folder")
    p.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    p.add_argument("--repeat", type=int, default=5, help="rounds; the best is kept")
    p.add_argument("--pin", type=int, default=None, help="run on this CPU only")
    p.add_argument("--only", default="", help="comma-separated cases (default: all)")
    p.add_argument(
        "--structure-baseline",
        default="",
        metavar="REV",
        help="also time structure.py as it was at this git revision",
    )
    return p.parse_args(argv)


def _example(cache: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(
        (cache / SAS / "package" / "example" / f"{name}.json").read_bytes()
    )
    return data


def _slots(template: dict[str, Any], n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        slot = copy.deepcopy(template)
        slot["id"] = f"bench-{i}"
        minute = 15 * (i % 40)
        day = f"2025-03-{10 + i // 400:02d}T{8 + minute // 60:02d}"
        slot["start"] = f"{day}:{minute % 60:02d}:00.000+01:00"
        slot["end"] = f"{day}:{minute % 60 + 14:02d}:00.000+01:00"
        out.append(slot)
    return out


def _measure(fn: Callable[[], int], seconds: float, repeat: int) -> tuple[float, float]:
    """(best items/s by wall clock, items/s by process CPU time in that round)."""
    fn()  # warm up: compiled profiles, expansions, caches
    best, best_cpu = 0.0, 0.0
    for _ in range(repeat):
        count, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            count += fn()
        wall = time.perf_counter() - start
        used = time.process_time() - cpu
        if count / wall > best:
            best, best_cpu = count / wall, count / used if used else 0.0
    return best, best_cpu


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache = args.package_path.expanduser()
    if not (cache / SAS / "package").is_dir():
        print(f"{SAS} not found in {cache}: nothing to measure", file=sys.stderr)
        return 2
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})

    t0 = time.perf_counter()
    conformance = load_conformance(cache, [SAS], [args.nos])
    t1 = time.perf_counter()
    validator = Validator(conformance, supplements=sas_supplements())
    compiled = validator.precompile()
    t2 = time.perf_counter()

    slot = _example(cache, "Slot-ExampleSlotPSIndiv1")
    cpts = _example(cache, "Slot-ExampleSlotCPTS1")
    role = _example(cache, "PractitionerRole-ExamplePractitionerRoleAgregateur")
    bundle = _example(cache, "Bundle-ExampleBundlePSIndiv")
    batch = _slots(slot, 1000)
    for name, resource in (("slot", slot), ("slot-cpts", cpts), ("role", role), ("bundle", bundle)):
        errors = [i for i in validator.validate(resource) if i.severity == "error"]
        assert not errors, (name, errors)

    def one(resource: dict[str, Any]) -> Callable[[], int]:
        def run() -> int:
            validator.validate(resource)
            return 1

        return run

    def many() -> int:
        for s in batch:
            validator.validate(s)
        return len(batch)

    def structure() -> int:
        structure_issues(slot)
        return 1

    def r4b_model() -> int:
        model_issues(slot)
        return 1

    cases: dict[str, tuple[Callable[[], int], str]] = {
        "slot": (one(slot), "FrSlotAgregateur example"),
        "slot-cpts": (one(cpts), "sas-cpts-slot-aggregator example"),
        "role": (one(role), "PractitionerRole + contained Location"),
        "bundle": (one(bundle), "BundleAgregateur, 12 entries"),
        "batch-1000": (many, "1,000 distinct Slots (per Slot)"),
        "structure": (structure, "structure.py on the Slot, for comparison"),
        "r4b-model": (r4b_model, "the R4B model pass structure.py no longer runs"),
    }
    if args.structure_baseline:
        old = _structure_at(args.structure_baseline)

        def structure_old() -> int:
            old(slot)
            return 1

        name = f"structure@{args.structure_baseline}"
        cases[name] = (structure_old, f"structure.py at {args.structure_baseline}, same Slot")
    chosen = [c for c in args.only.split(",") if c] or list(cases)

    print(f"python {platform.python_version()} on {platform.machine()}, {_cpu_model()}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (shared machine?)")
    print(
        f"packages loaded in {t1 - t0:.2f} s; {len(compiled)} profiles compiled in {t2 - t1:.2f} s"
    )
    print(f"{'case':<18} {'per second':>11} {'us each':>9} {'per CPU-s':>10}  what")
    for name in chosen:
        fn, what = cases[name]
        rate, cpu_rate = _measure(fn, args.seconds, args.repeat)
        print(f"{name:<18} {rate:>11,.0f} {1e6 / rate:>9.0f} {cpu_rate:>10,.0f}  {what}")
    return 0


def _structure_at(rev: str) -> Callable[[dict[str, Any]], Any]:
    """``structure_issues`` from ``fhir_server/validation/structure.py`` at a git revision."""
    source = subprocess.run(
        ["git", "show", f"{rev}:fhir_server/validation/structure.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parent,
    ).stdout
    module = types.ModuleType(f"structure_{rev}")
    exec(compile(source, f"structure@{rev}.py", "exec"), module.__dict__)
    fn: Callable[[dict[str, Any]], Any] = module.structure_issues
    return fn


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
