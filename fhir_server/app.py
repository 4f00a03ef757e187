"""create_app(settings): wires storage, search registry and routes. No logic lives here.

This is the only module that names concrete adapters.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import cache
from pathlib import Path

import orjson
import structlog
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from auth.oidc import OidcClient, OidcClientConfig
from auth.policy import Policy
from auth.tokens import IssuerConfig, TokenVerifier
from fhir_server import logging as fhir_logging
from fhir_server.api import booking_page, http, login, outcomes, routes, subscription_ws
from fhir_server.api import delivery as delivery_api
from fhir_server.api import ingest as ingest_api
from fhir_server.api import pull as pull_api
from fhir_server.api.audit import AuditTrail
from fhir_server.api.authn import Authenticator, make_trust
from fhir_server.api.bearer import BearerTokens
from fhir_server.api.login import WebLogin
from fhir_server.api.sessions import Cookies
from fhir_server.audit.writer import AuditWriter
from fhir_server.availability import agendas
from fhir_server.availability.search import AvailabilitySearch
from fhir_server.booking.forward import Limits
from fhir_server.booking.remote import RemoteBooking
from fhir_server.core.caller import Caller
from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.hooks import WriteHook
from fhir_server.delivery.loop import Housekeeping, process_id
from fhir_server.delivery.queue import Backoff, Queue
from fhir_server.delivery.retention import Purged, Target, delivery_targets, purge
from fhir_server.delivery.sas import SasOutbox
from fhir_server.delivery.sender import SasSender, SasTarget
from fhir_server.ingest.pull.config import load_sources
from fhir_server.ingest.pull.owners import remote_owners
from fhir_server.ingest.pull.scheduler import Puller
from fhir_server.ingest.pull.state import states_of
from fhir_server.interactions.context import Context
from fhir_server.interactions.idempotency import expired_keys
from fhir_server.interactions.subscription_state import set_error
from fhir_server.package_cache import read_manifest
from fhir_server.search.execute import Searcher
from fhir_server.search.registry.packages import registry_for
from fhir_server.settings import Settings
from fhir_server.storage.listen import Listener, asyncpg_dsn
from fhir_server.storage.migrate import SchemaState
from fhir_server.storage.port import Store
from fhir_server.subscriptions.hub import CHANNEL, Hub
from fhir_server.subscriptions.matcher import Active, Matcher
from fhir_server.subscriptions.resume import Resume
from fhir_server.subscriptions.rules import Rules
from fhir_server.subscriptions.sender import RestHookSender
from fhir_server.validation.packages import log_missing_packages
from fhir_server.validation.validator import Validator

log = structlog.get_logger(__name__)


def make_policy(settings: Settings) -> Policy:
    """The access policy; the store holds it and the context reads the store's."""
    return Policy(settings.slot_visibility)


def make_store(settings: Settings) -> Store:
    url, size, wait = settings.database_url, settings.db_pool_size, settings.db_pool_timeout
    limit = settings.statement_timeout_ms
    policy = make_policy(settings)
    if url.startswith("sqlite"):
        from fhir_server.storage.sqlite import SqliteStore

        return SqliteStore(
            url, pool_size=size, pool_timeout=wait, statement_timeout_ms=limit, policy=policy
        )
    if url.startswith("postgresql"):
        from fhir_server.storage.postgres import PostgresStore

        return PostgresStore(
            url, pool_size=size, pool_timeout=wait, statement_timeout_ms=limit, policy=policy
        )
    raise SystemExit(
        f"FHIR_DATABASE_URL {settings.database_url.split(':', 1)[0]}:... is not supported; "
        "use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db"
    )


class SchemaRefused(Exception):
    """The database's schema is not this code's and may not be migrated at start-up."""


def schema_refusal(state: SchemaState, database_url: str) -> str:
    """Why the server does not start on this schema, and the command that fixes it."""
    where = make_url(database_url).render_as_string(hide_password=True)
    if state.status == "ahead":
        return (
            f"the database schema is at revision {state.revision}, which this server does not "
            f"know (its newest is {state.head}): a newer version of the server migrated it. "
            f"Run that version (schemas are never downgraded). Database: {where}"
        )
    why = (
        "the database has no schema (it was never migrated)"
        if state.status == "missing"
        else f"the database schema is at revision {state.revision}, older than this "
        f"server's ({state.head})"
    )
    return (
        f"{why}. Run `fhir-server migrate` with the same FHIR_DATABASE_URL ({where}), "
        "or start with `fhir-server serve --migrate`."
    )


async def prepare_schema(settings: Settings, store: Store, *, migrate: bool = False) -> None:
    """Before serving: the schema must be this code's. SQLite (the embedded default) and
    ``migrate`` bring an older or missing one up to date; on PostgreSQL, by default,
    migrating is a deliberate step (``fhir-server migrate``), so anything but the current
    schema raises ``SchemaRefused``, as does a schema newer than the code on any engine."""
    state = await store.schema_state()
    if state.current:
        return
    if state.status != "ahead" and (migrate or settings.is_sqlite):
        await store.migrate()
        log.info("database schema migrated", revision=state.revision, head=state.head)
        return
    raise SchemaRefused(schema_refusal(state, settings.database_url))


def make_validator(settings: Settings) -> Validator | None:
    """Profiles of the manifest's packages, compiled once at start-up (once per process for
    one package cache). Without the R4 core package in the cache, profile validation is off
    (base R4 structure is still checked on every write) and the log says how to turn it on."""
    if not settings.validate_profiles:
        return None
    return _validator_for(settings.package_path, tuple(settings.terminology_paths))


@cache
def _validator_for(package_path: Path, terminology_paths: tuple[Path, ...]) -> Validator | None:
    validator = Validator.load(package_path, read_manifest(), terminology_paths)
    if not validator.conformance.has_core:
        log.warning(
            "profile validation is off: hl7.fhir.r4.core#4.0.1 is not in the package cache",
            package_path=str(package_path),
            fix="point FHIR_PACKAGE_PATH at a FHIR package cache holding it and the SAS package",
        )
        return None
    log_missing_packages(validator.conformance)
    validator.best_practice = False  # no "resource should have narrative" on every write
    log.info("profiles compiled", profiles=len(validator.precompile()))
    return validator


def make_context(
    settings: Settings, store: Store, wake: Callable[[], None] | None = None
) -> Context:
    """The interactions' context; the search registry is R4 plus the manifest's packages found
    in ``settings.package_path`` (read once per cache path). ``wake``: this process's
    delivery sender, woken when a write queued a message (``make_sender``)."""
    validator = make_validator(settings)
    required = _required_profiles(settings, validator)
    registry = registry_for(settings.package_path)
    searcher = Searcher(
        registry,
        settings.zone,
        default_count=settings.default_count,
        max_count=settings.max_count,
        cursor_secret=settings.cursor_secret.encode() if settings.cursor_secret else None,
        availability=(
            AvailabilitySearch(settings.availability_cache_slots)
            if settings.availability_cache_slots
            else None
        ),
    )
    return Context(
        store=store,
        registry=registry,
        timezone=settings.zone,
        validator=validator,
        searcher=searcher,
        who=Caller(role=settings.default_role),
        required_profiles=required,
        unique_identifiers=frozenset(settings.unique_identifiers),
        strict_conditional_ids=settings.conditional_update_id == "strict",
        referential_integrity=settings.referential_integrity,
        write_hooks=(
            *make_write_hooks(settings, wake),
            Matcher(searcher, store.policy, Active()),
            Resume(),
        ),
        subscription_rules=Rules(
            searcher, store.policy, frozenset(settings.subscription_allowed_hosts)
        ),
        forwarder=make_forwarder(settings),
    )


def matcher_of(ctx: Context) -> Matcher:
    """The context's subscription matcher (every context has one: ``make_context``)."""
    return next(h for h in ctx.write_hooks if isinstance(h, Matcher))


def purge_targets(settings: Settings) -> list[Target]:
    """What the purge deletes now (FHIR_DELIVERY_KEEP_*, FHIR_IDEMPOTENCY_KEY_HOURS)."""
    now = utcnow()
    keep_keys = timedelta(hours=settings.idempotency_key_hours)
    return [
        *delivery_targets(settings.delivery_keep_hours, settings.delivery_keep_failed_hours, now),
        expired_keys(keep_keys, now),
    ]


def make_purge(settings: Settings, store: Store) -> Housekeeping:
    """The purge a sender runs every FHIR_DELIVERY_PURGE_EVERY seconds (docs/delivery.md)."""

    async def run() -> Purged:
        return await purge(store, purge_targets(settings))

    return run


def make_subscription_sender(
    settings: Settings, ctx: Context, purging: bool = False
) -> RestHookSender:
    """This process's rest-hook sender (docs/subscriptions.md), woken by the writes of
    ``ctx`` that queued a notification or resumed a Subscription; ``purging``: it runs
    the purge too."""
    matcher = matcher_of(ctx)
    backoff = Backoff(settings.delivery_backoff_first, settings.delivery_backoff_max)

    async def on_error(sub_id: str, text: str) -> None:
        await set_error(ctx, sub_id, text)

    sender = RestHookSender(
        Queue(ctx.store, process_id(), backoff),
        ctx.store,
        matcher.active,
        on_error,
        failures=settings.subscription_failures,
        timeout=settings.subscription_timeout,
        concurrency=settings.subscription_concurrency,
        tick=settings.delivery_tick,
        housekeeping=make_purge(settings, ctx.store) if purging else None,
        housekeeping_every=settings.delivery_purge_every,
    )
    matcher.wake = sender.wake
    for hook in ctx.write_hooks:
        if isinstance(hook, Resume):
            hook.wake = sender.wake
    return sender


def make_write_hooks(settings: Settings, wake: Callable[[], None] | None) -> tuple[WriteHook, ...]:
    """The outboxes the write path feeds (docs/delivery.md): the SAS appointment push when
    FHIR_SAS_APPOINTMENTS_URL is set, from every command that writes."""
    if not settings.sas_appointments_url:
        return ()
    return (SasOutbox(settings.sas_identifier_system, wake),)


def make_sender(settings: Settings, store: Store, purging: bool = False) -> SasSender | None:
    """This process's SAS sender (FHIR_SAS_*, FHIR_DELIVERY_*); None without a SAS URL.
    ``purging``: it runs the purge too."""
    if not settings.sas_appointments_url:
        return None
    backoff = Backoff(settings.delivery_backoff_first, settings.delivery_backoff_max)
    target = SasTarget(
        settings.sas_appointments_url,
        client_cert=settings.sas_client_cert,
        client_key=settings.sas_client_key,
        ca_file=settings.sas_ca_file,
    )
    return SasSender(
        Queue(store, process_id(), backoff),
        target,
        timeout=settings.delivery_timeout,
        batch=settings.delivery_batch,
        tick=settings.delivery_tick,
        housekeeping=make_purge(settings, store) if purging else None,
        housekeeping_every=settings.delivery_purge_every,
    )


def _required_profiles(
    settings: Settings, validator: Validator | None
) -> dict[str, dict[str, tuple[str, ...]]]:
    """``FHIR_REQUIRED_PROFILES`` as the context holds it; says at start-up what it cannot
    check (writes claiming an unknown required profile are refused with 422)."""
    required = {
        role: {res_type: tuple(urls) for res_type, urls in by_type.items()}
        for role, by_type in settings.required_profiles.items()
    }
    urls = sorted({u for by_type in required.values() for us in by_type.values() for u in us})
    if urls and validator is None:
        log.warning(
            "required profiles are checked as claims only: profile validation is off",
            profiles=urls,
        )
    elif validator is not None:
        for url in urls:
            if validator.profile(url) is None:
                log.warning("required profile unknown: writes that need it are refused", url=url)
    return required


# A search answer allocates ~2,000 short-lived objects: with the default first threshold
# (700) every request triggers a few collections of the young generation.
GC_THRESHOLDS = (20_000, 20, 20)


def _preload(settings: Settings, ctx: Context) -> asyncio.Task[None] | None:
    """Warm the availability cache in the background (``FHIR_AVAILABILITY_PRELOAD``)."""
    cache = ctx.search.availability
    if not isinstance(cache, AvailabilitySearch) or not settings.availability_preload:
        return None

    async def run() -> None:
        try:
            done = await agendas.preload(ctx.store, cache)
        except Exception:  # a cold cache only costs speed: log it, keep serving
            log.exception("availability cache preload failed")
            return
        log.info(
            "availability cache warm",
            schedules=done.schedules,
            slots=done.slots,
            seconds=round(done.seconds, 1),
            complete=done.complete,
        )

    return asyncio.create_task(run())


def make_authenticator(settings: Settings) -> Authenticator:
    """Who calls the API: client certificates always; Bearer tokens when an issuer is set."""
    bearer = None
    if settings.psc_issuer:
        systems = frozenset(settings.system_clients)
        people = frozenset(settings.token_clients) | (
            {settings.psc_client_id} if settings.psc_client_id else set()
        )
        issuer = IssuerConfig(
            settings.psc_issuer,
            allowed_clients=people | systems,
            required_acr=None,  # people's tokens: checked by BearerTokens (systems have none)
            discovery_path=settings.psc_discovery_path,
            system_clients=systems,
        )
        bearer = BearerTokens(
            TokenVerifier([issuer]),
            system_clients=settings.system_clients,
            person_roles=settings.person_roles,
            acr=settings.psc_acr,
        )
    return Authenticator(settings, make_trust(settings), bearer)


def make_web_login(settings: Settings) -> WebLogin | None:
    """The login pages' PSC client and cookies; None without FHIR_PSC_ISSUER/CLIENT_ID."""
    if not settings.psc_issuer or not settings.psc_client_id:
        return None
    key = None
    if settings.psc_private_key_file is not None:
        key = orjson.loads(settings.psc_private_key_file.read_bytes())
    secret = settings.psc_client_secret.get_secret_value() if settings.psc_client_secret else None
    client = OidcClient(
        OidcClientConfig(
            settings.psc_issuer,
            settings.psc_client_id,
            client_secret=secret,
            private_key_jwk=key,
            acr_values=settings.psc_acr,
            discovery_path=settings.psc_discovery_path,
        )
    )
    if settings.session_secret is None:
        log.warning(
            "FHIR_SESSION_SECRET is not set: web sessions are signed with a key of this "
            "process only (lost at restart, unknown to other workers)"
        )
        session_key = secrets.token_urlsafe(32)
    else:
        session_key = settings.session_secret.get_secret_value()
    cookies = Cookies(
        session_key, max_age=settings.session_max_age, secure=settings.session_cookie_secure
    )
    return WebLogin(client, cookies, settings.person_roles)


def make_audit_writer(settings: Settings) -> AuditWriter | None:
    """This process's audit writer (FHIR_AUDIT_*), started by the lifespan."""
    if not settings.audit:
        return None
    return AuditWriter(
        source=settings.audit_source,
        batch_size=settings.audit_batch_size,
        interval_ms=settings.audit_interval_ms,
        queue_size=settings.audit_queue_size,
    )


def make_puller(settings: Settings, ctx: Context) -> Puller | None:
    """Pull mode (FHIR_PULL_SOURCES, docs/pull.md); None without a sources file. The file
    was checked by the command that started the server (``PullConfigError`` otherwise)."""
    if settings.pull_sources is None:
        return None
    return Puller(
        ctx,
        states_of(ctx.store),
        load_sources(settings.pull_sources),
        max_bytes=settings.ingest_max_bytes,
        max_depth=settings.max_json_depth,
        vanished=settings.ingest_vanished,
        tick=settings.pull_tick,
        concurrency=settings.pull_concurrency,
        lease_margin=settings.pull_lease_margin,
    )


def make_forwarder(settings: Settings) -> RemoteBooking | None:
    """Booking at the owner first for slots pulled from vendors' SAS FHIR APIs
    (docs/forwarding.md); None without such a source or with FHIR_FORWARD_BOOKINGS=false.
    The sources file was checked by the command that started the server."""
    if not settings.forward_bookings or settings.pull_sources is None:
        return None
    limits = Limits(
        timeout=settings.forward_timeout,
        retries=settings.forward_retries,
        deadline=settings.forward_deadline,
        backoff=settings.forward_backoff,
    )
    owners = remote_owners(load_sources(settings.pull_sources), limits)
    if not owners.by_system:
        return None
    log.info(
        "bookings forwarded to their owners",
        owners=sorted(o.name for o in owners.by_system.values()),
    )
    return RemoteBooking(owners)


def make_ping_listener(settings: Settings, store: Store, hub: Hub) -> Listener | None:
    """PostgreSQL: this process's one LISTEN connection feeding its websocket hub with the
    pings of every process's writes (docs/subscriptions.md). None on SQLite (one process:
    the writer pings its own hub)."""
    from fhir_server.storage.postgres import PostgresStore

    if not isinstance(store, PostgresStore):
        return None
    return Listener(
        asyncpg_dsn(store.engine.url),
        CHANNEL,
        hub.notified,
        backoff_max=settings.subscription_listen_backoff_max,
        check_every=settings.subscription_listen_check,
    )


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    settings = settings or Settings()
    fhir_logging.configure(settings.log_level, settings.log_format)
    audit = make_audit_writer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        active = store or make_store(settings)
        if not own_store:
            active.policy = make_policy(settings)  # a store made by the caller: these settings'
        if own_store:
            await prepare_schema(settings, active)  # SQLite sets itself up
        authn = make_authenticator(settings)
        # every process sends the outbox (docs/delivery.md), woken by its own writes
        sender = make_sender(settings, active)
        app.state.delivery = sender
        sending = sender is not None and settings.delivery_in_serve
        wake = sender.wake if sender is not None and sending else None
        app.state.wiring = routes.Wiring(make_context(settings, active, wake), settings, authn)
        app.state.web = make_web_login(settings)
        app.state.audit = audit
        if audit is not None:
            audit.start(app.state.wiring.ctx)
        if own_store:
            # What start-up built (search registry, compiled profiles, value sets) lives as
            # long as the process: out of the collector's generations, a full collection
            # takes ~1 ms instead of ~170 ms, a pause every request in flight would wait on.
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
        log.info("fhir server ready", database=active.dialect)
        warming = _preload(settings, app.state.wiring.ctx) if own_store else None
        # every process polls (each source by one at a time: docs/pull.md), and answers
        # $pull-status
        app.state.pull = make_puller(settings, app.state.wiring.ctx)
        if app.state.pull is not None and settings.pull_in_serve:
            app.state.pull.start()
        if sender is not None and sending:
            sender.start()
        # the rest-hook notifications (docs/subscriptions.md): every process sends them too
        notifier = None
        if settings.delivery_in_serve:
            # it purges too (the outbox, expired Idempotency-Key records)
            notifier = make_subscription_sender(settings, app.state.wiring.ctx, purging=True)
            notifier.start()
        app.state.subscriptions = notifier
        # the websocket channel: this process's bound connections, pinged after commits
        app.state.subscription_hub = hub = Hub()
        matcher = matcher_of(app.state.wiring.ctx)
        matcher.ping = hub.ping
        listener = make_ping_listener(settings, active, hub)  # PostgreSQL: every process's
        if listener is not None:
            matcher.listening = listener.listening.is_set
            listener.start()
        try:
            yield
        finally:
            if listener is not None:
                await listener.stop()
            if notifier is not None:
                await notifier.stop()
            if sender is not None:
                await sender.stop()
            if app.state.pull is not None:
                await app.state.pull.stop()
            if warming is not None:
                warming.cancel()
            if audit is not None:  # after the last request: its events are written first
                await audit.close()
            await authn.aclose()
            if app.state.web is not None:
                await app.state.web.client.aclose()
            if own_store:
                await active.close()

    app = FastAPI(
        title="SAS FHIR server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    outcomes.install(app)
    if audit is not None:  # every access becomes an AuditEvent (FHIR_AUDIT; docs/audit.md)
        anonymous = Caller(role=settings.default_role) if settings.auth == "none" else None
        app.add_middleware(AuditTrail, writer=audit, anonymous=anonymous)
    if settings.access_log:  # one line per request (FHIR_ACCESS_LOG; its cost: docs/perf.md)
        app.add_middleware(fhir_logging.AccessLog)
    # the server's own pages first: /auth/login would otherwise match /{type}/{id}
    app.include_router(
        login.router(
            lambda request: http.base_url(request, settings),
            lambda request: request.app.state.web,
            lambda request: request.app.state.wiring.ctx,
        )
    )
    app.include_router(  # GET/POST /booking, the link in Slot.comment
        booking_page.router(
            lambda request: http.base_url(request, settings),
            lambda request: request.app.state.web,
            lambda request: request.app.state.wiring.ctx,
        )
    )
    app.include_router(ingest_api.router())  # POST /$ingest, before POST /{type}
    app.include_router(pull_api.router())  # GET /$pull-status, before GET /{type}
    app.include_router(delivery_api.router())  # GET /$delivery-status, before GET /{type}
    app.include_router(subscription_ws.router())  # the websocket channel's endpoint
    app.include_router(routes.router())

    return app
