"""Starlette <-> Authlib: the request and response adapters Authlib leaves to integrations.

Authlib's authorization server is framework-free but synchronous; it ships Flask and Django
integrations only. Its generic server asks an integration for two things: an
``OAuth2Request`` (method, URI, headers, and a payload of query + form parameters, like
Flask's ``request.values``) and a way to turn ``(status, body, headers)`` into a response.
Starlette reads bodies asynchronously, so :func:`read_request` awaits the form first and
hands Authlib a fully read, immutable snapshot; the rest of Authlib's work is plain CPU on
in-memory data and runs inline.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

MAX_FORM_BYTES = 64 * 1024  # an OAuth request is a few hundred bytes; refuse anything large


class BadForm(ValueError):
    """A POST body that is not a small UTF-8 form."""


class _Payload(OAuth2Payload):
    """Query and form parameters together (the first value of each wins, as in Flask)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """An Authlib request built from a Starlette request whose body is already read."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args = dict(query)
        self._form = dict(form)
        self.payload = _Payload(query + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


async def read_request(request: Request) -> StarletteOAuth2Request:
    """The Authlib view of ``request``: its query string and, for a form POST, its body
    (read up to :data:`MAX_FORM_BYTES`, else :class:`BadForm`)."""
    form: list[tuple[str, str]] = []
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BadForm("request body too large")
        try:
            form = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise BadForm("request body is not UTF-8") from None
    query = list(request.query_params.multi_items())
    return StarletteOAuth2Request(request.method, str(request.url), request.headers, query, form)


def to_response(status: int, body: Any, headers: list[tuple[str, str]] | None) -> Response:
    """Authlib's ``(status, body, headers)`` as a Starlette response (dict bodies as JSON)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    response = Response(content=body, status_code=status)
    for name, value in headers or []:
        response.headers[name] = value
    return response
