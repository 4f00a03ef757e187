"""Talk to the SAS FHIR server with SMART on FHIR's ``fhirclient`` (R4 models).

    .venv/bin/python examples/clients/fhirclient_client.py [BASE_URL] [--token TOKEN]

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
from zoneinfo import ZoneInfo

import requests
from fhirclient import client
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.practitioner import Practitioner
from fhirclient.models.slot import Slot

RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
SAS_SYSTEM = "urn:oid:1.2.250.1.213.3.6"  # the SAS platform: meta.source of regulator accounts
REGULATOR_RPPS = "810999900045"  # invented, not in the demo data set


def regulator(rpps: str) -> Practitioner:
    """A regulator account as the SAS platform posts it (FrPractitionerRegul)."""
    return Practitioner(
        {
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
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:8080")
    parser.add_argument("--token", help="bearer access token, if the server requires one")
    parser.add_argument("--rpps", default=REGULATOR_RPPS, help="identifier value to create")
    args = parser.parse_args()

    smart = client.FHIRClient(settings={"app_id": "sas-demo", "api_base": args.base_url})
    server = smart.server
    if args.token:
        # fhirclient's own auth runs the SMART launch; a ready token goes on the session.
        server.session.headers["Authorization"] = f"Bearer {args.token}"

    capability = CapabilityStatement.read_from("metadata", server)
    types = [r.type for rest in capability.rest or [] for r in rest.resource or []]
    print(f"CapabilityStatement: FHIR {capability.fhirVersion}, {len(types)} types")
    print("  " + ", ".join(types))

    identifier = f"{RPPS_SYSTEM}|{args.rpps}"
    by_identifier = Practitioner.where(struct={"identifier": identifier})
    try:
        created = regulator(args.rpps).create(server) or {}
        practitioner_id = created.get("id")
        print(f"created Practitioner/{practitioner_id}")
    except requests.HTTPError as error:
        # The SAS rule: a second POST for the same identifier is refused (run twice = here).
        print(f"create refused ({error}); using the existing account")
        practitioner_id = None
    if practitioner_id is None:  # refused, or created without a body: find it by identifier
        practitioner_id = next(by_identifier.perform_resources_iter(server)).id

    read = Practitioner.read(practitioner_id, server)
    print(f"read Practitioner/{read.id}: {' '.join(read.name[0].given)} {read.name[0].family}")

    found = [p.id for p in by_identifier.perform_resources_iter(server)]
    print(f"search identifier={identifier}: {found}")

    today = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    # fhirclient's "$gte" operator writes the old ">=" prefix; R4 wants "ge" in the value.
    search = Slot.where(struct={"status": "free", "start": f"ge{today}", "_count": "10"})
    bundle = next(search.perform_iter(server))  # first page only
    print(f"search Slot?status=free&start=ge{today}: total={bundle.total}, first page:")
    for entry in bundle.entry or []:
        slot = entry.resource
        print(f"  {slot.start.as_json()}  {slot.schedule.reference}  {slot.id}")


if __name__ == "__main__":
    main()
