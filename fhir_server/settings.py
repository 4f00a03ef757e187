"""All configuration, from ``FHIR_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from auth.policy import Policy
from fhir_server.core.roles import ANY_ROLE, ROLES, Role
from fhir_server.core.types import is_served

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/fhir.sqlite"


class ClientCertificate(BaseModel):
    """One FHIR_CLIENT_CERTIFICATES entry: the subject (CN, OU) of a system's certificate,
    and who it is here."""

    cn: str
    ou: str
    client_id: str
    role: Role


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_", env_file=None, extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    base_url: str | None = Field(
        None, description="Public base URL; when unset it is taken from each request"
    )
    timezone: str = Field("Europe/Paris", description="Zone of dates sent without an offset")
    max_body_bytes: int = Field(5 * 1024 * 1024, description="Largest accepted request body")
    # orjson cannot write 255 levels; the deepest real SAS Bundle nests ~22
    max_json_depth: int = Field(
        100, ge=20, le=200, description="Deepest nesting of objects and arrays in request JSON"
    )
    log_level: str = Field("info", description="debug, info, warning, error")
    log_format: Literal["console", "json"] = Field("console", description="Log renderer")
    access_log: bool = Field(
        True, description="One structured line per request (at info); off where a proxy logs"
    )
    audit: bool = Field(True, description="Record every access as an AuditEvent (docs/audit.md)")
    audit_batch_size: int = Field(
        200, ge=1, description="AuditEvents written per database transaction, at most"
    )
    audit_interval_ms: int = Field(
        200, ge=1, description="Longest an AuditEvent waits in memory before it is written"
    )
    audit_queue_size: int = Field(
        10_000,
        ge=1,
        description="AuditEvents waiting to be written per process; when full, requests wait"
        " (back-pressure) rather than lose an event",
    )
    audit_source: str = Field(
        "sas-fhir-server",
        description="This site's name in AuditEvent.source (site and observer)",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Addresses whose X-Forwarded-Proto/Host/Prefix headers are honoured",
    )
    default_count: int = Field(
        1000,
        description="Page size when _count is not given (large: SAS searches come in one page)",
    )
    max_count: int = Field(5000, description="Largest _count honoured")
    availability_cache_slots: int = Field(
        20_000_000,
        ge=0,
        description="Slots whose index rows each process keeps in memory for the SAS slot"
        " search (about 40 bytes each); 0 turns the cache off",
    )
    availability_preload: bool = Field(
        True,
        description="Read every Schedule's agenda into that cache when the server starts"
        " (in the background; searches are answered meanwhile)",
    )
    cursor_secret: str | None = Field(
        None,
        description="Key signing search paging cursors; set the same value on every worker",
    )
    db_pool_size: int = Field(
        10,
        ge=1,
        description="Database connections per process, as many again at peaks (PostgreSQL;"
        " on SQLite the connections that search)",
    )
    db_pool_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a request waits for a free database connection (SQLite: for its"
        " turn to write) before it is answered 503 with Retry-After",
    )
    statement_timeout_ms: int = Field(
        30_000,
        ge=0,
        description="Longest a database statement of a request may run, in milliseconds; past"
        " it the statement is cancelled, nothing is changed and the answer is 503 with"
        " Retry-After (0: no limit; `load`, `reindex` and `migrate` run without it)",
    )
    auth: Literal["on", "none"] = Field(
        "on",
        description="Authentication: 'on' (client certificates, Bearer tokens; 401 without) or"
        " 'none' (development only: every client gets FHIR_DEFAULT_ROLE; refused on addresses"
        " other than loopback)",
    )
    tls_cert_file: Path | None = Field(
        None,
        description="Server certificate (PEM, with its intermediate CAs); set with "
        "FHIR_TLS_KEY_FILE, `serve` speaks HTTPS (TLS 1.2 and 1.3 only)",
    )
    tls_key_file: Path | None = Field(None, description="Private key of FHIR_TLS_CERT_FILE")
    tls_client_ca_file: Path | None = Field(
        None,
        description="CAs trusted for client certificates (PEM; IGC-Santé in production); "
        "unset: no client certificate is asked for",
    )
    tls_crl_files: list[Path] = Field(
        default_factory=list,
        description="Certificate revocation lists (PEM), checked at the handshake and again "
        "by the application, which re-reads a file when it changes",
    )
    client_certificates: list[ClientCertificate] = Field(
        default_factory=list,
        description='Allow-list of client certificates: JSON list of {"cn", "ou", '
        '"client_id", "role"}; a verified certificate whose CN and OU are not listed is 403',
    )
    client_cert_max_chain: int = Field(
        4,
        ge=1,
        le=10,
        description="Longest client certificate chain accepted, root included (IGC-Santé: 3)",
    )
    client_cert_header: str | None = Field(
        None,
        description="Reverse-proxy mode: header holding the verified client certificate "
        "(nginx $ssl_client_escaped_cert, e.g. X-SSL-Client-Cert), honoured only from "
        "FHIR_TRUSTED_PROXIES",
    )
    client_verify_header: str = Field(
        "X-SSL-Client-Verify",
        description="Reverse-proxy mode: header holding nginx's $ssl_client_verify (SUCCESS "
        "when the proxy verified the certificate)",
    )
    tls_handshake_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a connection may take to complete its TLS handshake before it "
        "is closed (idle connections hold no slot for longer)",
    )
    keep_alive_timeout: int = Field(
        15,
        ge=1,
        description="Seconds an open connection may stay idle, before its first request or "
        "between requests, before the server closes it",
    )
    max_connections: int = Field(
        4000,
        ge=10,
        description="Connections (and requests in progress) per process beyond which new "
        "requests are answered 503 at once; the open-files limit is raised to fit",
    )
    psc_issuer: str | None = Field(
        None,
        description="Pro Santé Connect issuer (sandbox: https://auth.bas.psc.esante.gouv.fr/"
        "auth/realms/esante-wallet; locally `fhir-server dev-idp`); unset: no web login and "
        "no bearer tokens",
    )
    psc_discovery_path: str = Field(
        ".well-known/wallet-openid-configuration",
        description="Discovery document under the issuer (PSC's own path; Keycloak's is "
        ".well-known/openid-configuration)",
    )
    psc_client_id: str | None = Field(
        None, description="This server's client id at PSC (web login and introspection)"
    )
    psc_client_secret: SecretStr | None = Field(
        None, description="Its client secret (or FHIR_PSC_PRIVATE_KEY_FILE)"
    )
    psc_private_key_file: Path | None = Field(
        None, description="Private JWK (JSON) for private_key_jwt client authentication"
    )
    psc_acr: str = Field("eidas1", description="acr required of people's tokens (PSC: eidas1)")
    token_clients: list[str] = Field(
        default_factory=list,
        description="Client ids (azp) whose people's access tokens the API accepts as Bearer "
        "tokens (regulation software registered at PSC); this server's own client id always",
    )
    system_clients: dict[str, Role] = Field(
        default_factory=dict,
        description="Client id (azp) -> role, for systems calling with client-credentials "
        "Bearer tokens from the issuer (their tokens carry no person)",
    )
    person_roles: dict[str, Role] = Field(
        default_factory=dict,
        description="National id (8+RPPS, 0+ADELI) -> role for people without a regulator "
        "account (administrators, platform operators); active regulator accounts "
        "(FrPractitionerRegul) make a regulator",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Key signing the web session cookies; the same on every worker (unset: a "
        "random key per process, sessions lost at restart)",
    )
    session_max_age: int = Field(
        8 * 3600, ge=60, description="Seconds a web session lasts after sign-in"
    )
    session_cookie_secure: bool = Field(
        True,
        description="Session cookies only over HTTPS (__Host- prefix); false only for a "
        "plain-HTTP development server on loopback",
    )
    package_path: Path = Field(
        Path.home() / ".fhir" / "packages", description="FHIR package cache (profiles)"
    )
    package_registry: str = Field(
        "https://packages.fhir.org",
        description="FHIR package registry used by `fhir-server packages install`",
    )
    terminology_paths: list[Path] = Field(
        default_factory=list,
        description="Folders of loose CodeSystem/ValueSet JSON files (e.g. NOS terminologies)",
    )
    validate_profiles: bool = Field(
        True, description="Validate every write against the profiles it claims (422 on error)"
    )
    default_role: Role = Field(
        "admin",
        description="Role of every client while FHIR_AUTH=none: vendor, regulator, platform, admin",
    )
    required_profiles: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="Role (or '*') -> resource type -> profile URLs its writes must claim and "
        "satisfy (422 otherwise)",
    )
    unique_identifiers: list[str] = Field(
        default_factory=lambda: ["Practitioner"],
        description="Resource types whose active resources may not share an identifier "
        "system|value (422 duplicate)",
    )
    conditional_update_id: Literal["lenient", "strict"] = Field(
        "lenient",
        description="Conditional update with a body id that is not the target's: ignored "
        "(lenient, what the SAS platform needs) or refused as FHIR R4 says (strict: 400/409)",
    )
    slot_visibility: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Role -> Slot types (TRE-R314 meta.security codes PUBLIC, PRO, SNP, CPTS, "
        "or UNLABELLED for none) its searches and reads show, JSON; unset roles keep the "
        "default: regulator PUBLIC/PRO/SNP, platform and admin all (docs/policy.md)",
    )
    referential_integrity: bool = Field(
        True,
        description="Refuse writes whose relative references (Type/id) name no stored "
        "resource of a served type (400 not-found); false for loads of data out of order",
    )

    ingest_vanished: Literal["delete", "busy"] = Field(
        "delete",
        description="What an ingested snapshot does to a stored Slot of its Schedules and "
        "window that it no longer holds: delete it, or mark it busy-unavailable (busy); a "
        "booked Slot is kept either way (docs/ingest.md)",
    )
    ingest_max_bytes: int = Field(
        50 * 1024 * 1024,
        description="Largest feed `fhir-server ingest` reads from a file or URL (the API's "
        "$ingest is bounded by FHIR_MAX_BODY_BYTES)",
    )
    pull_sources: Path | None = Field(
        None,
        description="JSON or TOML file of the sources the server polls (pull mode, "
        "docs/pull.md); unset: no polling. Checked at start: `serve` refuses a bad file",
    )
    pull_in_serve: bool = Field(
        True,
        description="Poll the sources inside every `serve` process (false: only "
        "`fhir-server pull` polls)",
    )
    pull_tick: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Seconds between two looks of a process for due sources",
    )
    pull_concurrency: int = Field(
        4, ge=1, le=64, description="Sources one process polls at the same time"
    )
    pull_lease_margin: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="Seconds a source's lease outlives the step it covers (one request, "
        "whole, or one ingest); a process that dies mid-pull frees its sources that long "
        "after its last step",
    )
    # -- booking (issue 13: fhir_server/booking, interactions/slot_booking.py, idempotency.py)
    idempotency_key_hours: int = Field(
        24,
        ge=1,
        le=24 * 30,
        description="Hours an Idempotency-Key of a POST is remembered: a retry with the same "
        "key and body within that time replays the first result",
    )
    # Booking slots pulled from a remote vendor at their owner first (docs/forwarding.md)
    forward_bookings: bool = Field(
        True,
        description="Book slots pulled from a `sas-fhir` source at that vendor's SAS API "
        "first (recorded here only once it confirms); false: book them locally only",
    )
    forward_timeout: float = Field(
        5.0, gt=0, le=300, description="Seconds for each request to the owner, whole"
    )
    forward_retries: int = Field(
        2,
        ge=0,
        le=20,
        description="Attempts after the first on a connection error, timeout, 408, 429 or 5xx",
    )
    forward_deadline: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Seconds for all attempts and waits of one forwarded request together; "
        "past it the client gets 503/504 and nothing is stored",
    )
    forward_backoff: float = Field(
        0.5,
        ge=0,
        le=60,
        description="Seconds before the first retry, doubled each time (jittered down to half)",
    )

    # -- delivery: the persistent outbox and the SAS appointment push (docs/delivery.md) --
    sas_appointments_url: str | None = Field(
        None,
        description="Base URL of the SAS platform's appointment API (INT_R03): an Appointment "
        "made through SAS is pushed to `POST {url}/Appointment`, its later versions to `PUT "
        "{url}/Appointment?identifier=`; unset: nothing is queued nor sent",
    )
    sas_client_cert: Path | None = Field(
        None, description="Our client certificate (PEM) for the mTLS connection to the SAS"
    )
    sas_client_key: Path | None = Field(
        None, description="The key of FHIR_SAS_CLIENT_CERT (PEM); never logged"
    )
    sas_ca_file: Path | None = Field(
        None,
        description="CA bundle that signed the SAS platform's server certificate (default: "
        "the system's)",
    )
    sas_identifier_system: str = Field(
        "urn:ietf:rfc:3986",
        description="System of the appointment identifier the SAS platform knows our "
        "appointments by (our software's OID or URL, INT_R03); an Appointment without one "
        "gets this system with its resource id as value",
    )
    delivery_in_serve: bool = Field(
        True,
        description="Send the outbox from every `serve` process (false: only `fhir-server "
        "deliver` sends)",
    )
    delivery_tick: float = Field(
        1.0,
        gt=0,
        le=300,
        description="Seconds between two looks of a sender for due messages (a local write "
        "wakes it at once)",
    )
    delivery_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds one send may take (connect and answer)"
    )
    delivery_backoff_first: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="Seconds before the first retry of a failed send; doubles each attempt, "
        "with jitter",
    )
    delivery_backoff_max: float = Field(
        300.0, ge=0, le=86400, description="Longest wait between two attempts of a message"
    )
    delivery_batch: int = Field(
        32, ge=1, le=1000, description="Messages one sender claims and sends at a time"
    )
    # -- issue 13, the booking page (api/booking_page.py, docs/booking-page.md) --------------
    booking_page_url: str | None = Field(
        None,
        description="The booking page put in the Slot.comment of mapped vendor feeds "
        "ingested through $ingest when the request names none (booking-url; pull sources "
        "name theirs in FHIR_PULL_SOURCES), followed by "
        "?slot=<Slot id>; unset: <public base URL>/booking when web sign-in is configured "
        "(FHIR_PSC_ISSUER), else no comment",
    )

    # -- subscriptions: FHIR R4 Subscription, rest-hook (docs/subscriptions.md) --
    subscription_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Consecutive failed rest-hook notifications of a Subscription (across its "
        "messages; a success clears the count) after which it is set to status=error, its "
        "notifications held until the client resumes it",
    )
    subscription_timeout: float = Field(
        5.0, gt=0, le=300, description="Seconds one rest-hook notification may take"
    )
    subscription_concurrency: int = Field(
        16,
        ge=1,
        le=1000,
        description="Rest-hook notifications one process sends at once (each subscription "
        "in order, a hanging endpoint holds one of these only)",
    )
    subscription_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names a rest-hook endpoint may name (JSON list; empty: any host; "
        "the SSRF stance, docs/subscriptions.md)",
    )
    # -- issue 13, sender: retention of the outbox and of Idempotency-Key records
    # (delivery/retention.py, `fhir-server purge`, docs/delivery.md) --
    delivery_keep_hours: int = Field(
        168,
        ge=1,
        le=24 * 3650,
        description="Hours a sent message of the outbox is kept after it was sent, then purged",
    )
    delivery_keep_failed_hours: int = Field(
        720,
        ge=1,
        le=24 * 3650,
        description="Hours a failed message (reported by $delivery-status) is kept after it "
        "was queued, then purged; pending messages are never purged",
    )
    delivery_purge_every: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Seconds between two purges of sent and failed messages and expired "
        "Idempotency-Key records by a process's sender (one process at a time; 0: only "
        "`fhir-server purge`)",
    )

    # -- wsfan: websocket pings across processes (PostgreSQL LISTEN, docs/subscriptions.md) --
    subscription_listen_check: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds between probes of a process's idle LISTEN connection "
        "(PostgreSQL): a connection cut without notice is replaced at most this late",
    )
    subscription_listen_backoff_max: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Longest wait, in seconds, between two attempts to connect the LISTEN "
        "connection again (PostgreSQL; from 0.1 s, doubled each failure)",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @field_validator("required_profiles")
    @classmethod
    def _roles_and_types(
        cls, value: dict[str, dict[str, list[str]]]
    ) -> dict[str, dict[str, list[str]]]:
        for role, by_type in value.items():
            if role != ANY_ROLE and role not in ROLES:
                raise ValueError(f"unknown role {role!r} (use {', '.join(ROLES)} or '*')")
            for res_type in by_type:
                if not is_served(res_type):
                    raise ValueError(f"resource type {res_type!r} is not served")
        return value

    @field_validator("unique_identifiers")
    @classmethod
    def _served(cls, value: list[str]) -> list[str]:
        for res_type in value:
            if not is_served(res_type):
                raise ValueError(f"resource type {res_type!r} is not served")
        return value

    @field_validator("slot_visibility")
    @classmethod
    def _visibility(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        Policy(value)  # raises ValueError naming the unknown role or label
        return value

    @field_validator("base_url", "package_registry")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
