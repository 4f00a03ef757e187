"""The booking link in ``Slot.comment`` of ingested feeds (``$ingest``), as a SAS slot search
answers it: the request's ``booking-url``, else FHIR_BOOKING_PAGE_URL, else this server's own
page when web sign-in is configured, else none; a vendor's own Slot keeps its comment."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.ingest.simple_format import feed_json, person  # registers test-simple

BASE = "http://testserver"
RPPS = "10000000001"


async def comment_after_ingest(store: Store, query: str = "", **settings: Any) -> str | None:
    app = create_app(
        Settings(validate_profiles=False, audit=False, availability_preload=False, **settings),
        store=store,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            slot = {"key": "s1", "start": "2026-06-12T10:00:00", "end": "2026-06-12T10:15:00"}
            doc = feed_json([person("dr", RPPS, [slot])])
            answer = await client.post(
                f"/$ingest?format=test-simple&vendor=v{query}", content=orjson.dumps(doc)
            )
            assert answer.status_code == 200, answer.text
            found = await client.get(
                "/Slot",
                params={
                    "schedule.actor:Practitioner.identifier": f"urn:oid:1.2.250.1.71.4.2.1|8{RPPS}",
                    "status": "free",
                },
            )
            [entry] = found.json()["entry"]
            comment: str | None = entry["resource"].get("comment")
            if comment is not None:  # the link names this very slot
                assert comment.endswith(f"?slot={entry['resource']['id']}")
            return comment


async def test_the_setting_names_the_booking_page(store: Store) -> None:
    comment = await comment_after_ingest(store, booking_page_url="https://rdv.example.org/booking")
    assert comment is not None and comment.startswith("https://rdv.example.org/booking?slot=")


async def test_the_request_wins_over_the_setting(store: Store) -> None:
    comment = await comment_after_ingest(
        store,
        "&booking-url=https://other.example.org/r",
        booking_page_url="https://rdv.example.org/booking",
    )
    assert comment is not None and comment.startswith("https://other.example.org/r?slot=")


async def test_with_web_sign_in_the_server_own_page_is_the_default(store: Store) -> None:
    comment = await comment_after_ingest(store, psc_issuer="http://127.0.0.1:9/realm")
    assert comment is not None and comment.startswith(f"{BASE}/booking?slot=")


async def test_without_page_nor_setting_no_comment(store: Store) -> None:
    assert await comment_after_ingest(store) is None


async def test_a_vendor_slot_written_with_its_own_comment_keeps_it(store: Store) -> None:
    settings = Settings(validate_profiles=False, audit=False, psc_issuer="http://127.0.0.1:9/r")
    app = create_app(settings, store=store)
    own = "https://agenda.example.org/dr?x=1"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            schedule = {"resourceType": "Schedule", "id": "sc", "actor": [{"display": "Dr"}]}
            slot = {
                "resourceType": "Slot",
                "id": "own",
                "schedule": {"reference": "Schedule/sc"},
                "status": "free",
                "start": "2026-06-12T10:00:00+02:00",
                "end": "2026-06-12T10:15:00+02:00",
                "comment": own,
            }
            headers = {"Content-Type": "application/fhir+json"}
            assert (await client.put("/Schedule/sc", json=schedule, headers=headers)).is_success
            assert (await client.put("/Slot/own", json=slot, headers=headers)).is_success
            assert (await client.get("/Slot/own")).json()["comment"] == own
