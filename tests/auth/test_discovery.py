"""Fetching an issuer's discovery document over loopback HTTP: PSC's path then the standard
one, the issuer named in it, caching, and answers that are refused (redirects, not JSON,
too large, plain-HTTP endpoints)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from auth.discovery import Discovery, check_url
from auth.errors import IdpUnavailable
from tests.auth.psc_stub import serving

WALLET = "/realm/.well-known/wallet-openid-configuration"
STANDARD = "/realm/.well-known/openid-configuration"


class Site:
    """A web server whose answers the test sets per path."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self.base = ""

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        self.counts[path] += 1
        answer = self.answers.get(path)
        if answer is None:
            return PlainTextResponse("not found", status_code=404)
        return answer() if callable(answer) else JSONResponse(answer)

    @property
    def issuer(self) -> str:
        return self.base + "/realm"


@pytest.fixture
def site() -> Iterator[Site]:
    site = Site()
    app = Starlette(routes=[Route("/{path:path}", site.handle, methods=["GET", "POST"])])
    with serving(app) as base:
        site.base = base
        yield site


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=True) as client:
        yield client


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def document(site: Site, **extra: Any) -> dict[str, Any]:
    return {"issuer": site.issuer, "jwks_uri": site.issuer + "/certs", **extra}


async def test_psc_path_first_and_cached(site: Site, http: httpx.AsyncClient) -> None:
    site.answers[WALLET] = document(site)
    site.answers[STANDARD] = document(site, jwks_uri=site.issuer + "/other")
    clock = Clock()
    discovery = Discovery(http, site.issuer, clock=clock, max_age=100)
    assert await discovery.endpoint("jwks_uri") == site.issuer + "/certs"
    await discovery.endpoint("jwks_uri")
    assert site.counts[WALLET] == 1 and site.counts[STANDARD] == 0
    clock.now += 100
    await discovery.endpoint("jwks_uri")
    assert site.counts[WALLET] == 2


async def test_standard_path_as_fallback_or_configured(site: Site, http: httpx.AsyncClient) -> None:
    site.answers[STANDARD] = document(site)
    assert await Discovery(http, site.issuer).endpoint("jwks_uri")
    assert site.counts[WALLET] == 1
    configured = Discovery(http, site.issuer, ".well-known/openid-configuration")
    assert await configured.endpoint("jwks_uri")
    assert site.counts[WALLET] == 1 and site.counts[STANDARD] == 2


async def test_no_document(site: Site, http: httpx.AsyncClient) -> None:
    with pytest.raises(IdpUnavailable, match="no discovery document"):
        await Discovery(http, site.issuer).document()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (lambda: PlainTextResponse("<html>", 200), "not JSON"),
        (lambda: JSONResponse([1, 2]), "not a JSON object"),
        (lambda: JSONResponse({"error": "x"}, 500), "HTTP 500"),
        (lambda: RedirectResponse("http://127.0.0.1:9/elsewhere", 302), "HTTP 302"),
        (lambda: PlainTextResponse("x" * 300_000), "larger than"),
        (lambda: JSONResponse({"issuer": "https://other.example/realm"}), "another issuer"),
    ],
)
async def test_refused_answers(
    site: Site, http: httpx.AsyncClient, answer: Any, match: str
) -> None:
    site.answers[WALLET] = answer
    with pytest.raises(IdpUnavailable, match=match):
        await Discovery(http, site.issuer).document()


async def test_missing_or_insecure_endpoints(site: Site, http: httpx.AsyncClient) -> None:
    site.answers[WALLET] = document(site, token_endpoint="http://psc.example/token")
    discovery = Discovery(http, site.issuer)
    with pytest.raises(IdpUnavailable, match="not https"):
        await discovery.endpoint("token_endpoint")
    with pytest.raises(IdpUnavailable, match="no userinfo_endpoint"):
        await discovery.endpoint("userinfo_endpoint")


async def test_a_failed_refresh_keeps_the_document(site: Site, http: httpx.AsyncClient) -> None:
    site.answers[WALLET] = document(site)
    clock = Clock()
    discovery = Discovery(http, site.issuer, clock=clock, max_age=10)
    await discovery.document()
    site.answers[WALLET] = lambda: JSONResponse({}, 503)
    clock.now += 10
    assert (await discovery.document())["issuer"] == site.issuer
    assert site.counts[WALLET] == 2


@pytest.mark.parametrize(
    "url",
    [
        "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet",
        "http://127.0.0.1:8080/r",
        "http://localhost/r",
        "http://[::1]:9000/r",
    ],
)
def test_urls_allowed(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://auth.esw.esante.gouv.fr/r", "ftp://127.0.0.1/r", "https:///r", "/r", ""]
)
def test_urls_refused(url: str) -> None:
    with pytest.raises(IdpUnavailable):
        check_url(url)
