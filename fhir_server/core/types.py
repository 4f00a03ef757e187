"""The resource types this server serves, and small helpers about FHIR ids."""

from __future__ import annotations

import re

SERVED_TYPES: tuple[str, ...] = (
    "Appointment",
    "AuditEvent",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Schedule",
    "Slot",
    "Subscription",
)

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def is_served(resource_type: str) -> bool:
    return resource_type in SERVED_TYPES


def is_valid_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))
