"""Talk to the SAS FHIR server with fhirpy (beda.software), synchronous client.

    .venv/bin/python examples/clients/fhirpy_client.py [BASE_URL] [--token TOKEN]

(``./scripts/run`` installs the client library into ``.venv``; elsewhere
``pip install -e '.[examples]'``.)

Reads the CapabilityStatement, creates a regulator Practitioner (the SAS INT_R02 shape),
reads it back, searches it by its national identifier, then searches today's free Slots.
Load the demo data first (examples/README.md) to see slots. Without ``--token`` the server
must run with ``FHIR_AUTH=none`` (local development only).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import BaseFHIRError

RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
SAS_SYSTEM = "urn:oid:1.2.250.1.213.3.6"  # the SAS platform: meta.source of regulator accounts
REGULATOR_RPPS = "810999900045"  # invented, not in the demo data set


def regulator(rpps: str) -> dict[str, Any]:
    """A regulator account as the SAS platform posts it (FrPractitionerRegul)."""
    return {
        "resourceType": "Practitioner",
        "meta": {
            "profile": [
                "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/FrPractitionerRegul"
            ],
            "source": SAS_SYSTEM,
        },
        "identifier": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203",
                            "code": "IDNPS",
                        }
                    ]
                },
                "system": RPPS_SYSTEM,
                "value": rpps,
            }
        ],
        "active": True,
        "name": [{"family": "Bernard", "given": ["Julie"]}],
        "telecom": [{"system": "email", "value": "julie.bernard@example.org"}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:8080")
    parser.add_argument("--token", help="bearer access token, if the server requires one")
    parser.add_argument("--rpps", default=REGULATOR_RPPS, help="identifier value to create")
    args = parser.parse_args()

    client = SyncFHIRClient(
        args.base_url, authorization=f"Bearer {args.token}" if args.token else None
    )

    capability = client.execute("metadata", method="get")
    types = [r["type"] for rest in capability.get("rest", []) for r in rest.get("resource", [])]
    print(f"CapabilityStatement: FHIR {capability.get('fhirVersion')}, {len(types)} types")
    print("  " + ", ".join(types))

    identifier = f"{RPPS_SYSTEM}|{args.rpps}"
    try:
        created = client.resource("Practitioner", **regulator(args.rpps)).create()
        practitioner_id = created["id"]
        print(f"created Practitioner/{practitioner_id}")
    except BaseFHIRError as error:
        # The SAS rule: a second POST for the same identifier is refused (run twice = here).
        print(f"create refused ({' '.join(str(error).split())[:160]}); using the existing account")
        existing = client.resources("Practitioner").search(identifier=identifier).first()
        if existing is None:
            raise
        practitioner_id = existing["id"]

    read = client.reference("Practitioner", practitioner_id).to_resource()
    name = read["name"][0]
    print(f"read Practitioner/{read['id']}: {' '.join(name['given'])} {name['family']}")

    found = client.resources("Practitioner").search(identifier=identifier).fetch()
    print(f"search identifier={identifier}: {[p['id'] for p in found]}")

    today = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    search = client.resources("Slot").search(status="free", start=f"ge{today}").limit(10)
    bundle = search.fetch_raw()
    print(f"search Slot?status=free&start=ge{today}: total={bundle.get('total')}, first page:")
    for entry in bundle.get("entry", []):
        slot = entry["resource"]
        print(f"  {slot['start']}  {slot['schedule']['reference']}  {slot['id']}")


if __name__ == "__main__":
    main()
