"""The operator's list of sources to poll (``FHIR_PULL_SOURCES``: a JSON or TOML file),
read and checked whole at start-up: one bad entry refuses the file, with every problem
said (``serve`` and ``pull`` exit 2), rather than a source silently never polled.

JSON: ``{"sources": [{...}, ...]}`` (or the bare list); TOML: ``[[sources]]`` tables.
See docs/pull.md and examples/pull-sources.json.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fhir_server.ingest.sources import SourceError, read_rpps_table
from mappings import registry

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")  # also the Endpoint's id: pull-NAME
RPPS = re.compile(r"^\d{11}$")
SAS_QUERY_MAX_RPPS = 25  # the SAS PS search names 1..25 practitioners per query


class PullConfigError(Exception):
    """The sources file cannot be used; the message lists every problem found."""


class Tls(BaseModel):
    """mTLS towards the vendor: our client certificate and key (PEM), and the CA bundle
    that signed the vendor's server certificate (default: the system's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cert: Path
    key: Path
    ca: Path | None = None

    @model_validator(mode="after")
    def _readable(self) -> Tls:
        for label, path in (("cert", self.cert), ("key", self.key), ("ca", self.ca)):
            if path is not None and not path.is_file():
                raise ValueError(f"tls.{label}: {path} is not a readable file")
        return self


class PullSource(BaseModel):
    """One source: where, which format, how often, and the mapping options of its feeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    url: str
    format: str
    enabled: bool = True
    interval: Annotated[float, Field(ge=1, le=86_400)] = 300  # seconds between two polls
    timeout: Annotated[float, Field(gt=0, le=600)] = 30  # seconds per HTTP request, whole
    # after a failure, wait retry * 2^(failures-1) (jittered), at most max_backoff
    retry: Annotated[float, Field(ge=1, le=3600)] = 30
    max_backoff: Annotated[float, Field(ge=1, le=86_400)] = 3600
    max_pages: Annotated[int, Field(ge=1, le=1000)] = 50  # sas-fhir: `next` links followed
    tls: Tls | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # e.g. an API key header
    # mapping options (mappings.contract.MappingOptions)
    vendor: str = ""
    booking_url: str | None = None
    window_days: Annotated[int, Field(ge=1, le=366)] = 2
    rpps_table: Path | None = None  # vendor practitioner key -> RPPS (CSV or JSON)
    owner: str | None = None  # write as this vendor client id; default: the server itself
    owner_key: str | None = None
    # sas-fhir: the practitioners asked about (RPPS, 11 digits), 25 per query
    rpps: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("letters, digits, '.' and '-' only, 1 to 63 characters")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL (use headers or tls)")
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in registry.formats():
            raise ValueError(f"unknown format; known: {', '.join(registry.formats())}")
        return value

    @field_validator("rpps")
    @classmethod
    def _rpps(cls, value: list[str]) -> list[str]:
        bad = [r for r in value if not RPPS.match(r)]
        if bad:
            raise ValueError(f"not 11 digits: {', '.join(bad[:5])}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PullSource:
        if self.format == "sas-fhir" and self.enabled and not self.rpps:
            raise ValueError("a sas-fhir source needs `rpps`: the practitioners to ask about")
        if self.tls is not None and not self.url.startswith("https://"):
            raise ValueError("tls needs an https:// URL")
        if self.rpps_table is not None and not self.rpps_table.is_file():
            raise ValueError(f"rpps_table: {self.rpps_table} is not a readable file")
        if self.max_backoff < self.retry:
            raise ValueError("max_backoff must be at least retry")
        return self

    def lease_seconds(self, margin: float) -> float:
        """How long a claim or a renewal holds the source: one request (bounded whole by
        ``timeout``) or one ingest step, plus ``margin``. The holder renews it before each;
        a dead holder's lease frees the source that long after its last step."""
        return self.timeout + margin

    @property
    def poll_deadline(self) -> float:
        """The whole poll (every page and query, the reconciliation) must end by then."""
        queries = max(1, -(-len(self.rpps) // SAS_QUERY_MAX_RPPS))
        pages = self.max_pages if self.format == "sas-fhir" else 1
        return min(self.timeout * (queries * pages + 2), 3600)


class PullConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sources: list[PullSource]

    @model_validator(mode="after")
    def _unique(self) -> PullConfig:
        names = [s.name for s in self.sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source names used twice: {', '.join(twice)}")
        # a pulled slot names its vendor, not its source: bookings forwarded to the owner
        # (docs/forwarding.md) must find one address per vendor
        seen: dict[str, PullSource] = {}
        for source in self.sources:
            if source.format != "sas-fhir" or not source.enabled:
                continue
            vendor = source.vendor or "sas-fhir"
            first = seen.setdefault(vendor, source)
            if first.url.rstrip("/") != source.url.rstrip("/") or first.tls != source.tls:
                raise ValueError(
                    f"sources {first.name} and {source.name}: sas-fhir sources of one vendor "
                    f"({vendor!r}) at different addresses; give each its own `vendor`"
                )
        return self


def load_sources(path: Path) -> list[PullSource]:
    """The sources of ``path``; ``PullConfigError`` naming each problem (entry and field)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PullConfigError(f"{path}: {exc.strerror or exc}") from exc
    try:
        document: Any = (
            tomllib.loads(raw.decode("utf-8"))
            if path.suffix.lower() == ".toml"
            else orjson.loads(raw)
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise PullConfigError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from exc
    if isinstance(document, list):
        document = {"sources": document}
    _resolve_paths(document, path.parent)
    try:
        config = PullConfig.model_validate(document)
    except ValidationError as exc:
        raise PullConfigError(f"{path}: " + "; ".join(_problems(exc, document))) from None
    for source in config.sources:
        if source.rpps_table is not None:
            try:
                read_rpps_table(source.rpps_table)
            except SourceError as exc:
                raise PullConfigError(f"{path}: source {source.name}: {exc}") from None
    return config.sources


def _resolve_paths(document: Any, folder: Path) -> None:
    """Relative file paths in the file (RPPS tables, certificates) are relative to it."""
    entries = document.get("sources") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        tls = entry.get("tls")
        for holder, key in [(entry, "rpps_table")] + [
            (tls, k) for k in ("cert", "key", "ca") if isinstance(tls, dict)
        ]:
            value = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(value, str) and value and not Path(value).is_absolute():
                holder[key] = str(folder / value)


def _problems(exc: ValidationError, document: Any) -> list[str]:
    """One line per error: the source (by name when it has one) and the field."""
    found = []
    for error in exc.errors():
        where = list(error["loc"])
        label = ".".join(str(p) for p in where) or "file"
        if len(where) >= 2 and where[0] == "sources" and isinstance(where[1], int):
            entries = document.get("sources") if isinstance(document, dict) else None
            entry = entries[where[1]] if isinstance(entries, list) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            field = ".".join(str(p) for p in where[2:]) or "entry"
            label = f"source {name or '#' + str(where[1] + 1)}: {field}"
        found.append(f"{label}: {error['msg'].removeprefix('Value error, ')}")
    return found
