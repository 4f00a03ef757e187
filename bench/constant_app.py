"""The read baseline: the real server app plus ``GET /__constant/{id}`` answering fixed bytes.

The extra route goes through the same app, middleware, router dependencies (Accept check,
wiring), id check and response helpers (media type, ETag, Last-Modified) as
``GET /Slot/{id}``; the only thing it skips is the database fetch. The benchmark starts it
as its own process, exactly as ``fhir-server serve`` runs the real server:

    python bench/constant_app.py --port 8081 --body-file slot.json
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from fhir_server.api import http, routes
from fhir_server.app import create_app
from fhir_server.interactions._resource import check_id, check_type
from fhir_server.settings import Settings
from fhir_server.storage.port import Stored

PATH = "/__constant/{res_id}"


async def _accept(request: Request) -> None:
    http.check_accept(request)


def constant_app(settings: Settings, body: bytes) -> FastAPI:
    app = create_app(settings)
    stored = Stored(
        res_type="Slot",
        res_id="constant",
        version=1,
        last_updated=datetime.now(UTC),
        deleted=False,
        content=body,
    )

    async def get_constant(res_id: str, request: Request, w: routes.Wired) -> Response:
        check_type(stored.res_type)
        check_id(res_id)
        headers = http.version_headers(stored)
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return http.fhir_response(stored.content, headers=headers)

    app.add_api_route(
        PATH,
        get_constant,
        methods=["GET"],
        response_class=Response,
        dependencies=[Depends(_accept)],
    )
    # Put it first: the generic GET /{res_type}/{res_id} would otherwise take the path.
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True, help="bytes to answer with")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("the baseline listens on 127.0.0.1 only")
    settings = Settings()
    app = constant_app(settings, args.body_file.read_bytes())
    # The same call as `fhir-server serve` (fhir_server/cli.py), one process.
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level, access_log=False)


if __name__ == "__main__":
    main()
