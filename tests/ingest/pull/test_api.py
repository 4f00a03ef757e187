"""``GET [base]/$pull-status`` on the real app (in process), SQLite and PostgreSQL: each
source's freshness as Parameters, for admins only; the operation in the
CapabilityStatement; the puller wired in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhir_server.app import create_app
from fhir_server.ingest.pull.scheduler import Puller
from fhir_server.storage.port import Store
from tests.ingest.conftest import ingest_settings
from tests.ingest.pull.feeds import FeedServer, Route, feed_server
from tests.ingest.pull.test_scheduler import feed
from tests.ingest.simple_format import NAME

HEADERS = {"accept": "application/fhir+json"}


def sources_file(tmp_path: Path, server: FeedServer) -> Path:
    entries = [
        {"name": "good", "url": server.url("/good.json?key=k"), "format": NAME, "timeout": 2},
        {"name": "bad", "url": server.url("/bad.json"), "format": NAME, "timeout": 2},
        {"name": "off", "url": server.url("/off.json"), "format": NAME, "enabled": False},
    ]
    path = tmp_path / "sources.json"
    path.write_bytes(orjson.dumps({"sources": entries}))
    return path


async def client(
    store: Store, role: str, **extra: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(ingest_settings(auth="none", default_role=role, **extra), store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, app


def parts(source: dict[str, Any]) -> dict[str, Any]:
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in source["part"]
    }


async def test_admins_see_each_source_s_freshness(store: Store, tmp_path: Path) -> None:
    with feed_server() as server:
        server.routes["/good.json"] = Route(feed(2))
        server.routes["/bad.json"] = Route(b"no", status=503)
        path = sources_file(tmp_path, server)
        async for c, app in client(store, "admin", pull_sources=path, pull_in_serve=False):
            puller: Puller = app.state.pull
            assert puller is not None and puller._task is None  # not polling in this process
            await puller.prepare()
            await puller.run_once()
            r = await c.get("/$pull-status", headers=HEADERS)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["resourceType"] == "Parameters"
            found = {parts(s)["name"]: parts(s) for s in body["parameter"]}
            good, bad, off = found["good"], found["bad"], found["off"]
            assert good["status"] == "active" and good["slotCount"] == 2
            assert good["failures"] == 0 and "lastSuccess" in good and "nextDue" in good
            assert good["address"] == server.url("/good.json")  # no query: it may hold a key
            assert good["endpoint"] == {"reference": "Endpoint/pull-good"}
            assert bad["status"] == "error" and bad["failures"] == 1
            assert "HTTP 503" in bad["lastError"] and "lastSuccess" not in bad
            assert off["status"] == "off" and "nextDue" not in off
            endpoints = await c.get("/Endpoint", headers=HEADERS)
            statuses = {
                e["resource"]["id"]: e["resource"]["status"] for e in endpoints.json()["entry"]
            }
            assert statuses == {"pull-good": "active", "pull-bad": "error", "pull-off": "off"}
            cs = (await c.get("/metadata", headers=HEADERS)).json()
            operations = [o["name"] for o in cs["rest"][0]["operation"]]
            assert "pull-status" in operations and "ingest" in operations


async def test_other_roles_are_refused(store: Store) -> None:
    for role in ("vendor", "regulator", "platform"):
        async for c, _app in client(store, role):
            r = await c.get("/$pull-status", headers=HEADERS)
            assert r.status_code == 403, (role, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"


async def test_without_sources_the_status_is_empty(store: Store) -> None:
    async for c, app in client(store, "admin"):
        assert app.state.pull is None
        r = await c.get("/$pull-status", headers=HEADERS)
        assert r.json() == {"resourceType": "Parameters"}
