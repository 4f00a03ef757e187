"""Tables: current resources, full history, and the search index.

``resources`` holds the current version of every resource (deleted ones keep a row with
``deleted`` set, so a read answers 410). ``content`` is the exact JSON bytes served back: it
is stored as bytes, not JSONB, because JSONB reorders keys and the server promises to return
what it stored without re-parsing. ``history`` holds every version.

Index tables hold one row per extracted search value, keyed by the resource's surrogate
``res_pk``; they are rewritten in the same transaction as the resource.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    text,
)

from fhir_server.storage.types import UtcDateTime

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
PK = BigInteger().with_variant(Integer(), "sqlite")
UTC_TIME = UtcDateTime()  # read back aware, in UTC, on both engines

resources = Table(
    "resources",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", UTC_TIME, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=False),
    # who wrote it first (access policy: a vendor sees and changes its own); NULL: the server
    Column("owner", String(128), nullable=True),
    # a Slot's TRE-R314 codes, "|PRO|PUBLIC|" (auth.policy.slot_labels); NULL: other types
    Column("labels", Text, nullable=True),
    # an Appointment's slot owner, who reads it too (auth.policy ReadScope.party_types)
    Column("party", String(128), nullable=True),
    Index("ux_resources_type_id", "res_type", "res_id", unique=True),
    Index("ix_resources_type_updated", "res_type", "last_updated"),
    # a vendor's "rows I am party to": only Appointments have one, so a partial index
    Index(
        "ix_resources_party",
        "party",
        "res_type",
        postgresql_where=text("party IS NOT NULL"),
        sqlite_where=text("party IS NOT NULL"),
    ),
)

history = Table(
    "history",
    metadata,
    Column("res_pk", PK, ForeignKey("resources.pk", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("last_updated", UTC_TIME, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=False),
    Column("owner", String(128), nullable=True),  # as in ``resources``, per version
    Column("labels", Text, nullable=True),
    Column("party", String(128), nullable=True),  # per version, as owner
    Index("ux_history_type_id_version", "res_type", "res_id", "version", unique=True),
    Index("ix_history_updated", "last_updated"),
    Index("ix_history_type_updated", "res_type", "last_updated"),
)


def _index_table(
    name: str, *columns: Column[object], indexes: tuple[tuple[str, ...], ...]
) -> Table:
    table = Table(
        name,
        metadata,
        Column("res_pk", PK, ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
        Index(f"ix_{name}_res", "res_pk"),
    )
    for i, cols in enumerate(indexes):
        Index(f"ix_{name}_{i}", *cols, _table=table)
    return table


idx_token = _index_table(
    "idx_token",
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("text", Text, nullable=True),
    indexes=(("res_type", "param", "code", "system", "res_pk"),),
)
idx_string = _index_table(
    "idx_string",
    # ``norm`` is lower-cased and stripped of accents: "Hélène" is stored as "helene".
    Column("norm", Text, nullable=False),
    Column("value", Text, nullable=False),
    indexes=(("res_type", "param", "norm", "res_pk"),),
)
idx_date = _index_table(
    "idx_date",
    Column("low", UTC_TIME, nullable=True),
    Column("high", UTC_TIME, nullable=True),
    indexes=(("res_type", "param", "low", "res_pk"), ("res_type", "param", "high")),
)
idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", Text, nullable=True),
    indexes=(
        ("res_type", "param", "target_id", "target_type", "res_pk"),
        ("target_type", "target_id"),
    ),
)
# A reference and a date of the same resource in one row, for the searches that ask both:
# the SAS slot search is "slots of these schedules starting in this window", and one index
# range scan over (schedule, start) reads only the slots it returns, where separate
# reference and date rows read every slot of the schedules' whole horizon. ``param`` names
# the pair ("schedule+start"); which pairs exist is decided in ``search.composites``.
idx_ref_date = _index_table(
    "idx_ref_date",
    Column("target_type", String(64), nullable=False),
    Column("target_id", String(64), nullable=False),
    Column("low", UTC_TIME, nullable=True),
    Column("high", UTC_TIME, nullable=True),
    indexes=(("res_type", "param", "target_id", "target_type", "low", "high", "res_pk"),),
)
idx_uri = _index_table(
    "idx_uri",
    Column("value", Text, nullable=False),
    indexes=(("res_type", "param", "value", "res_pk"),),
)
idx_number = _index_table(
    "idx_number",
    Column("value", Numeric, nullable=False),
    indexes=(("res_type", "param", "value", "res_pk"),),
)
idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Numeric, nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    indexes=(("res_type", "param", "code", "value", "res_pk"),),
)
idx_geo = _index_table(
    "idx_geo",
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    indexes=(("res_type", "param", "latitude", "longitude"),),
)

# Change keys, for the caches each server process keeps (``search.availability``). A row
# names a key that the current version of its resource touches ("Schedule/s1" for a Slot
# of that Schedule, and for the Schedule itself; which keys is decided in ``search.watch``).
# Every write transaction adds one to the ``watch_versions`` counter of each key its old
# and new versions touch, so a process can check in one query that what it cached is
# still what the database holds. A key without a counter row has never changed: version 0.
WATCH_KIND = "watch"  # the IndexRows key of these rows; storage counts their keys' changes
idx_watch = _index_table(
    "idx_watch",
    Column("key", Text, nullable=False),
    indexes=(),
)
watch_versions = Table(
    "watch_versions",
    metadata,
    Column("key", Text, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

INDEX_TABLES: dict[str, Table] = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
    "uri": idx_uri,
    "number": idx_number,
    "quantity": idx_quantity,
    "special": idx_geo,
    "ref_date": idx_ref_date,  # not a parameter type: pairs of parameters
    WATCH_KIND: idx_watch,  # not a parameter type: change keys
}

# The delivery outbox (``fhir_server/delivery/queue.py``, docs/delivery.md): one row per
# message to send (a version of a resource to the SAS platform, a notification), written in
# the same transaction as the version it carries, then claimed, sent and marked by the
# senders of every server process.
_UNSENT = "state IN ('pending', 'sending')"
_SENT = "state = 'sent'"
_FAILED = "state = 'failed'"
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("channel", String(128), nullable=False),  # "sas", "subscription/<id>"
    Column("key", String(200), nullable=False),  # ordering key: "Appointment/123"
    Column("res_type", String(64), nullable=True),
    Column("res_id", String(64), nullable=True),
    Column("version", Integer, nullable=True),
    Column("body", LargeBinary, nullable=True),  # what to send; NULL: the version itself
    Column("headers", Text, nullable=True),  # JSON object, extra headers or parameters
    Column("state", String(16), nullable=False),  # pending, sending, sent, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", UTC_TIME, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", UTC_TIME, nullable=True),
    Column("last_status", Integer, nullable=True),  # the receiver's last HTTP status
    Column("last_error", Text, nullable=True),
    Column("created", UTC_TIME, nullable=False),
    Column("sent", UTC_TIME, nullable=True),
    # the unsent rows only: claims stay fast however many sent rows the table keeps
    Index(
        "ix_deliveries_unsent",
        "id",
        postgresql_where=text(_UNSENT),
        sqlite_where=text(_UNSENT),
    ),
    Index("ix_deliveries_channel_key", "channel", "key", "id"),
    # the purge (delivery/retention.py, migration 0010): sent rows by when they were sent,
    # failed ones by when they were created
    Index(
        "ix_deliveries_sent",
        "sent",
        postgresql_where=text(_SENT),
        sqlite_where=text(_SENT),
    ),
    Index(
        "ix_deliveries_failed",
        "created",
        postgresql_where=text(_FAILED),
        sqlite_where=text(_FAILED),
    ),
)

# Idempotent retries (``Idempotency-Key`` on POST, docs/booking.md): the first successful
# result of each key of each client, written in the transaction of that result. A replay
# answers the recorded version again (its bytes are in ``history``).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client_id", Text, primary_key=True),  # "" for an anonymous caller
    Column("key", Text, primary_key=True),
    Column("request_hash", String(64), nullable=False),  # sha256 hex of the request
    Column("status", Integer, nullable=False),  # 201 or 200 (0 while its transaction runs)
    Column("res_type", String(64), nullable=True),
    Column("res_id", String(64), nullable=True),
    Column("version", Integer, nullable=True),
    Column("created", UTC_TIME, nullable=False),
    Index("ix_idempotency_keys_created", "created"),
)

# A rest-hook Subscription's consecutive failed notifications, across its messages (a
# success deletes the row; ``FHIR_SUBSCRIPTION_FAILURES`` of them set it to status=error):
# subscriptions/failures.py, migration 0010.
subscription_failures = Table(
    "subscription_failures",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("updated", UTC_TIME, nullable=False),
)
