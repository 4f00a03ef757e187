"""What every mapping module promises: bytes in, SAS-profiled FHIR resources and issues out.

A mapper is pure: no I/O, no database, no clock unless ``MappingOptions.now`` is unset, and
it never raises on bad input. Everything wrong with the input is an ``Issue`` with where it
was found (``file:line`` or ``file#/json/pointer``), and the mapper goes on with the rest.

Its output is grouped by practitioner (``PractitionerFeed``): the ingestion reconciles a feed
as one snapshot of that practitioner's availability over its window, atomically, so a feed
with an error (``rejected``) is stored not at all rather than in part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

FhirJson = dict[str, Any]
Severity = Literal["error", "warning", "information"]

PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding about the input: ``error`` rejects what it belongs to (a record, or the
    whole feed of a practitioner when ``practitioner`` is set), ``warning`` does not."""

    severity: Severity
    code: str  # an OperationOutcome issue type: invalid, structure, not-found, value, too-long…
    message: str
    location: str  # "file:line", "file#/json/pointer", or "file" for the whole input
    practitioner: str | None = None  # the vendor's key of the practitioner it concerns


@dataclass(slots=True)
class PractitionerFeed:
    """One practitioner's availability as the vendor sent it: the snapshot to reconcile.

    ``resources`` holds the Practitioner, PractitionerRole(s) and Schedule(s) (and, for event
    formats such as HL7 v2 SIU, Appointments); ``slots`` the Slots, each referencing one of
    those Schedules. ``window`` is the period the snapshot covers: a stored Slot of these
    Schedules starting in it and absent from ``slots`` has vanished from the vendor's agenda.
    ``window`` None: not a snapshot but events (SIU, a single change): its slots are created
    or updated, nothing is removed. ``rejected`` feeds are not stored at all.
    """

    key: str  # the vendor's own practitioner key (stable across feeds)
    rpps: str | None  # 11 digits; None when unknown (the feed is then rejected)
    resources: list[FhirJson] = field(default_factory=list)
    slots: list[FhirJson] = field(default_factory=list)
    window: tuple[datetime, datetime] | None = None
    rejected: bool = False

    @property
    def schedule_ids(self) -> list[str]:
        return [r["id"] for r in self.resources if r.get("resourceType") == "Schedule"]


@dataclass(slots=True)
class MappingResult:
    feeds: list[PractitionerFeed] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def error(
        self, code: str, message: str, location: str, practitioner: str | None = None
    ) -> None:
        self.issues.append(Issue("error", code, message, location, practitioner))
        if practitioner is not None:
            for feed in self.feeds:
                if feed.key == practitioner:
                    feed.rejected = True

    def warning(
        self, code: str, message: str, location: str, practitioner: str | None = None
    ) -> None:
        self.issues.append(Issue("warning", code, message, location, practitioner))

    def feed(self, key: str, rpps: str | None) -> PractitionerFeed:
        """The feed of practitioner ``key``, created on first use."""
        for existing in self.feeds:
            if existing.key == key:
                return existing
        created = PractitionerFeed(key=key, rpps=rpps)
        self.feeds.append(created)
        return created


@dataclass(frozen=True, slots=True)
class MappingOptions:
    source: str = "input"  # the file or URL name used in issue locations
    vendor: str = ""  # the vendor's short name, prefix of every id (default: the format's)
    timezone: ZoneInfo = PARIS  # local times without an offset are in this zone
    # vendor practitioner key -> RPPS (11 digits), for formats that carry none
    rpps_table: Mapping[str, str] = field(default_factory=dict)
    # a slot without an end and without a known motive duration lasts this long (reported)
    default_duration: timedelta = timedelta(minutes=15)
    # our booking page; each Slot.comment is this URL with its query (it holds a "?")
    booking_url: str | None = None
    # the window of a feed without an explicit one: [now, now + window_days)
    now: datetime | None = None
    window_days: int = 2
    max_bytes: int = 50 * 1024 * 1024  # larger inputs are refused whole (an issue)
    max_depth: int = 64  # deeper JSON nesting is refused whole (an issue)
    # the vendor's key of the agenda's owner when the payload does not name it (Mapharma,
    # Mesoigner: the pharmacy is in the URL that was asked, not in the answer)
    owner_key: str | None = None
    # vendor place key -> {"name", "line", "postalCode", "city"}: the address of a place the
    # payload does not describe (pharmacy formats; the vendor's centre listing gives it)
    places: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class Mapper(Protocol):
    """One vendor format. ``name`` is its registry key (``--format NAME``)."""

    name: str
    description: str

    def map(self, data: bytes, options: MappingOptions) -> MappingResult: ...
