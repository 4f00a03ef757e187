"""Run the app in uvicorn: HTTPS with client certificates, and limits that keep the server
answering when many connections are open.

uvicorn terminates TLS but does not show the client certificate to the application. Each
connection here puts it in the request scope as the ASGI TLS extension says
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM strings, leaf first), read from the
connection's ``ssl_object``; ``api/client_certificate.py`` takes it from there.

TLS: 1.2 and 1.3 only; the client certificate is *requested* at the handshake (optional
there, so a client without one still completes TLS and gets a 401 OperationOutcome from the
API) and verified against FHIR_TLS_CLIENT_CA_FILE and the CRLs when one is sent.

Limits (chosen in docs/deployment.md): a connection gets FHIR_TLS_HANDSHAKE_TIMEOUT seconds
to finish its handshake, then FHIR_KEEP_ALIVE_TIMEOUT seconds idle (uvicorn only times out
idle connections *after* a response; here also before the first request), and a process
answers 503 past FHIR_MAX_CONNECTIONS. The open-files limit is raised to its hard limit so
that a thousand idle connections do not use up the descriptors the next client needs.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
from collections.abc import Callable
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fhir_server.settings import Settings

log = structlog.get_logger(__name__)

ASGIApp = Callable[..., Any]
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The server's TLS context: its certificate, TLS ≥ 1.2, client certificates requested
    and verified against the client CAs and CRLs when configured."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("FHIR_TLS_CERT_FILE and FHIR_TLS_KEY_FILE are both needed for TLS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    context.set_alpn_protocols(["http/1.1"])
    if settings.tls_client_ca_file is not None:
        context.load_verify_locations(cafile=settings.tls_client_ca_file)
        # Requested, verified when sent, not required: the API answers 401 without one.
        context.verify_mode = ssl.CERT_OPTIONAL
        for crl in settings.tls_crl_files:
            context.load_verify_locations(cafile=crl)  # a PEM file of CRLs loads as well
        if settings.tls_crl_files:
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    elif settings.tls_crl_files:
        raise ValueError("FHIR_TLS_CRL_FILES needs FHIR_TLS_CLIENT_CA_FILE")
    return context


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ASGI TLS extension of one connection (client_cert_chain: PEM, leaf first)."""
    chain: list[str] = []
    leaf = ssl_object.getpeercert(binary_form=True)
    if leaf:
        # Python 3.13 has SSLObject.get_verified_chain(); 3.11 has it on the inner object.
        inner: Any = getattr(ssl_object, "_sslobj", ssl_object)
        verified = inner.get_verified_chain() or []
        chain = [c.public_bytes() for c in verified]  # PEM strings, the default
        if not chain:
            chain = [ssl.DER_cert_to_PEM_cert(leaf)]
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": None,
        "client_cert_error": None,  # the handshake fails on a certificate that does not verify
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


def _with_tls(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    async def with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("extensions", {})["tls"] = tls
        await app(scope, receive, send)

    return with_tls


class TlsHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, plus: the TLS extension in each request's scope, and
    the keep-alive timeout from the start of the connection (not only after a response)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _with_tls(self.app, tls_extension(ssl_object))
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def handle_websocket_upgrade(self) -> None:
        # uvicorn's websocket protocol runs config.loaded_app, not this connection's app:
        # hand it the app with the TLS extension, or a client certificate never
        # authenticates a websocket (the subscription channel, docs/subscriptions.md)
        app, original = self.app, self.ws_protocol_class

        def with_this_app(**kwargs: Any) -> Any:
            protocol: Any = original(**kwargs)  # type: ignore[misc]
            protocol.app = app
            return protocol

        self.ws_protocol_class = with_this_app  # type: ignore[assignment]
        try:
            super().handle_websocket_upgrade()
        finally:
            self.ws_protocol_class = original


class _HandshakeTimeout:
    """An event loop whose TLS servers close connections that do not finish the handshake
    in time (asyncio's default is 60 s, and uvicorn does not pass one)."""

    handshake_timeout: float = 60.0

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout)
        server: asyncio.Server = await super().create_server(*args, **kwargs)  # type: ignore[misc]
        return server


def _loop_factory(handshake_timeout: float) -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop

        base: type[asyncio.AbstractEventLoop] = uvloop.Loop
    except ImportError:  # uvicorn[standard] brings uvloop on Linux; asyncio's loop otherwise
        base = asyncio.SelectorEventLoop

    loop_class = type("ServerLoop", (_HandshakeTimeout, base), {})

    def make() -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = loop_class()
        loop.handshake_timeout = handshake_timeout  # type: ignore[attr-defined]
        return loop

    return make


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft open-files limit to the hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit", soft=soft, hard=hard, error=str(exc))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "open-files limit below FHIR_MAX_CONNECTIONS plus headroom; raise it (ulimit -n)",
            limit=soft,
            wanted=wanted,
        )
    return soft


FD_HEADROOM = 256  # database connections, files, the listening sockets


def config(
    app: ASGIApp | str, settings: Settings, *, host: str, port: int, factory: bool = False
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` (an app, or an import string with ``factory``)."""
    use_tls = settings.tls_cert_file is not None or settings.tls_key_file is not None
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        factory=factory,
        http=TlsHttpProtocol,
        ssl_context_factory=(lambda _config, _default: tls_context(settings)) if use_tls else None,
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        backlog=2048,
        log_level=settings.log_level,
        access_log=False,  # fhir_server.logging.AccessLog writes one structured line
        log_config=None,  # uvicorn's records go through our handler (logging.configure)
    )


def run(
    app: ASGIApp | str,
    settings: Settings,
    *,
    host: str,
    port: int,
    sock: socket.socket | None = None,
    factory: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM, on ``sock`` when given (workers), else on host:port."""
    raise_open_files_limit(settings.max_connections + FD_HEADROOM)
    server = uvicorn.Server(config(app, settings, host=host, port=port, factory=factory))
    with asyncio.Runner(loop_factory=_loop_factory(settings.tls_handshake_timeout)) as runner:
        runner.run(server.serve(sockets=[sock] if sock is not None else None))
