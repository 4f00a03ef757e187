"""What every interaction receives: the store, the search registry and a few settings.

Built once by ``app.py``; interactions never read settings or globals themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fhir_server.search.parameters import Registry
from fhir_server.storage.port import Store
from fhir_server.validation.validator import Validator


@dataclass(frozen=True)
class Context:
    store: Store
    registry: Registry
    timezone: ZoneInfo
    default_count: int = 50
    max_count: int = 1000
    cursor_secret: bytes | None = None  # None: the built-in key (catches corruption only)
    validator: Validator | None = None  # profile validation of writes; None: base R4 only
