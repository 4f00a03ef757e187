"""Which pulled slots belong to a remote vendor's agenda: those of the enabled ``sas-fhir``
sources (the vendor's SAS FHIR API, where a booking can be made). Their slots carry the
identifier ``urn:sas-fhir-server:VENDOR:slot|<the vendor's slot id>`` (mappings/sas_fhir.py),
so the booking path finds the owner, and the slot's id there, from the slot alone.

Feed formats (iCal, CSV, ...) have no booking API: their slots stay booked locally only.
"""

from __future__ import annotations

from collections.abc import Iterable

from fhir_server.booking.forward import Limits, Owner, Owners
from fhir_server.ingest.pull.config import PullSource
from mappings import sas


def slot_system(source: PullSource) -> str:
    system: str = sas.vendor_identifier(source.vendor or "sas-fhir", "slot", "")["system"]
    return system


def owner_of(source: PullSource) -> Owner:
    tls = source.tls
    return Owner(
        name=source.name,
        base=source.url,
        cert=tls.cert if tls else None,
        key=tls.key if tls else None,
        ca=tls.ca if tls else None,
        headers=dict(source.headers),
    )


def remote_owners(sources: Iterable[PullSource], limits: Limits) -> Owners:
    """The owners of the enabled ``sas-fhir`` sources, by their slots' identifier system."""
    by_system: dict[str, Owner] = {}
    for source in sources:
        if source.format != "sas-fhir" or not source.enabled:
            continue
        # one address per vendor: the sources file refuses two (config.PullConfig)
        by_system.setdefault(slot_system(source), owner_of(source))
    return Owners(by_system, limits)
