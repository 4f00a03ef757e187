"""What the pharmacy formats (Mapharma, Valwin, Bimedoc, Mesoigner) share.

Their payloads name a pharmacy (a centre key), never a pharmacist, and carry no RPPS. The
SAS offer is a practitioner's, so the pharmacy key is looked up in ``options.rpps_table``
(centre key -> RPPS of the pharmacist who holds that agenda): a pharmacy not in the table
is an error issue and its feed is rejected, never given an invented RPPS.

A pharmacy is mapped as one practitioner (its key) practising at one place (the same key):
one PractitionerRole with the pharmacy as contained Location, one Schedule. A capacity
above one (``places_dispo``, ``number_of_slots``) becomes that many slots, each bookable
once, as the SAS has no capacity element.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mappings import sas
from mappings._feeds import default_window, reject_named
from mappings.contract import FhirJson, MappingOptions, MappingResult, PractitionerFeed

MAX_CAPACITY = 50  # more seats than this on one slot is a vendor bug, not an offer


@dataclass(slots=True)
class Place:
    """The pharmacy as far as the payload describes it."""

    key: str
    name: str | None = None
    address: FhirJson | None = None
    position: tuple[float, float] | None = None  # (latitude, longitude)
    phone: str | None = None


@dataclass(slots=True)
class Offer:
    """One vendor slot, read and localised."""

    key: str  # the vendor's slot key, or one built from the start
    start: datetime
    end: datetime | None  # None: the vendor gives no end (default duration applies)
    location: str  # where it was read, for issues
    motive: str | None = None
    capacity: int = 1


@dataclass(slots=True)
class PharmacyFeeds:
    """Offers collected per pharmacy, turned into feeds once all were read."""

    vendor: str
    options: MappingOptions
    result: MappingResult
    places: dict[str, Place] = field(default_factory=dict)
    offers: dict[str, list[Offer]] = field(default_factory=dict)

    def add(self, place: Place, offer: Offer) -> None:
        self.places.setdefault(place.key, place)
        self.offers.setdefault(place.key, []).append(offer)

    def place(self, place: Place) -> None:
        """A pharmacy with no slot: its feed still empties its window."""
        self.places.setdefault(place.key, place)
        self.offers.setdefault(place.key, [])

    def finish(self) -> MappingResult:
        defaulted = 0
        for key, place in self.places.items():
            rpps = self.options.rpps_table.get(key)
            feed = self.result.feed(key, rpps if rpps and sas.RPPS.fullmatch(rpps) else None)
            feed.window = default_window(self.options)
            if feed.rpps is None:
                self.result.error(
                    "not-found",
                    f"pharmacy {key!r} has no RPPS in the RPPS table (no pharmacist is known "
                    "for it): its slots are not stored",
                    self.options.source,
                    practitioner=key,
                )
                continue
            if not _complete(place, self.options.places.get(key, {})):
                self.result.error(
                    "not-found",
                    f"pharmacy {key!r} has no address (line, postal code, city) in the answer "
                    "nor in the places table: the SAS needs it",
                    self.options.source,
                    practitioner=key,
                )
                continue
            defaulted += _fill(feed, self.vendor, place, self.offers[key], self.options)
        reject_named(self.result)
        if defaulted:
            minutes = int(self.options.default_duration.total_seconds() // 60)
            self.result.warning(
                "incomplete",
                f"{defaulted} slot(s) have no end: they last the default {minutes} minutes",
                self.options.source,
            )
        return self.result


def _complete(place: Place, known: Mapping[str, str]) -> bool:
    """Fill what the payload lacks from the places table; whether the address is whole."""
    if place.name is None:
        place.name = text(known.get("name"))
    address = place.address or {}
    if not (address.get("line") and address.get("city") and address.get("postalCode")):
        line, city, postal = (text(known.get(k)) for k in ("line", "city", "postalCode"))
        if not (line and city and postal):
            return False
        place.address = {"line": [line], "city": city, "postalCode": postal}
    return True


def _fill(
    feed: PractitionerFeed, vendor: str, place: Place, offers: list[Offer], opts: MappingOptions
) -> int:
    assert feed.rpps is not None
    feed.resources = [
        sas.practitioner(vendor, place.key, feed.rpps, None, None),
        sas.practitioner_role(
            vendor,
            place.key,
            place.key,
            place_name=place.name,
            address=place.address,
            position=place.position,
            phone=place.phone,
        ),
        sas.schedule(vendor, place.key, place.key),
    ]
    schedule = sas.schedule_id(vendor, place.key, place.key)
    defaulted = 0
    seen: set[str] = set()
    for offer in offers:
        if offer.capacity == 0:
            continue
        end = offer.end
        if end is None:
            # in UTC: aware arithmetic in one zone is wall-clock, wrong across a DST change
            end = offer.start.astimezone(UTC) + opts.default_duration
            defaulted += 1
        for seat in range(min(offer.capacity, MAX_CAPACITY)):
            key = offer.key if seat == 0 else f"{offer.key}#{seat + 1}"
            if key in seen:
                continue  # the same slot listed twice is one slot
            seen.add(key)
            feed.slots.append(
                sas.slot(
                    vendor,
                    schedule,
                    key,
                    offer.start,
                    end,
                    opts.timezone,
                    motive=offer.motive,
                    booking_url=opts.booking_url,
                )
            )
    return defaulted


def capacity(value: object, location: str, result: MappingResult, owner: str | None) -> int:
    """A seat count: a positive int; anything else is reported and counts as none."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        result.error("value", f"not a number of places: {value!r:.40}", location, owner)
        return 0
    if value > MAX_CAPACITY:
        result.warning("value", f"{value} places: only {MAX_CAPACITY} are offered", location, owner)
    return value


def text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
