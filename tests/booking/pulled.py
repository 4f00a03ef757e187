"""Pull two free slots (``v-1`` at 9:00, ``v-2`` at 10:00 tomorrow, Paris time) of vendor
``agenda`` from a loopback vendor into the store: the remote slots the forwarding tests book."""

from __future__ import annotations

from datetime import datetime, timedelta

from fhir_server.ingest.pull.config import PullSource
from fhir_server.ingest.pull.scheduler import Puller
from fhir_server.ingest.pull.state import states_of
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Store
from mappings.contract import PARIS
from tests.booking.vendor import Vendor, searchset


def tomorrow(hour: int) -> datetime:
    day = datetime.now(PARIS).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)


async def pull_two_slots(ctx: Context, store: Store, vendor: Vendor) -> PullSource:
    """The pull source of ``vendor``, once its two slots are stored."""
    vendor.searchset = searchset({"v-1": tomorrow(9), "v-2": tomorrow(10)})
    source = PullSource.model_validate(
        {
            "name": "agenda",
            "url": vendor.base + "/fhir",
            "format": "sas-fhir",
            "vendor": "agenda",
            "rpps": ["10000000015"],
            "booking_url": "https://rdv.example.org/book",
            "timeout": 5,
        }
    )
    puller = Puller(ctx, states_of(store), [source], 1_000_000, owner="t")
    await puller.prepare()
    (outcome,) = await puller.run_once()
    assert outcome.error is None and outcome.slots == 2, outcome
    return source
