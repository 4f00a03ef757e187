"""The ``party`` column (migration 0009) on both engines: written and read back with every
version (the prefetch and batched paths included), the vendor's read clause admits the
Appointments it is party to and only those, per version in history; the migration fills
the party of the Appointments stored before it; the partial index exists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import inspect, text

from fhir_server.core.caller import Caller
from fhir_server.storage.migrate import alembic_config
from fhir_server.storage.port import Store, Stored
from tests.conftest import open_store
from tests.storage.test_access import open_migrated, visible_ids

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
VENDOR = Caller(role="vendor", client_id="agenda-a")
OTHER = Caller(role="vendor", client_id="agenda-b")
REGULATOR = Caller(role="regulator", client_id="regulation-sw")


def version(
    res_type: str, res_id: str, n: int = 1, *, owner: str | None, party: str | None = None
) -> Stored:
    when = T0 + timedelta(minutes=n)
    return Stored(res_type, res_id, n, when, False, b"{}", "PUT", owner=owner, party=party)


async def test_the_vendor_reads_what_it_owns_or_is_party_to(database_url: str) -> None:
    s = await open_migrated(database_url)
    try:
        async with s.writing() as w:
            await w.put(version("Slot", "s-a", owner="agenda-a"), {}, None)
            await w.put(
                version("Appointment", "booked-a", owner="regulation-sw", party="agenda-a"),
                {},
                None,
            )
            await w.put(
                version("Appointment", "booked-b", owner="regulation-sw", party="agenda-b"),
                {},
                None,
            )
            await w.put(version("Appointment", "own-a", owner="agenda-a"), {}, None)
            # a party on another type admits nothing (only Appointments have one)
            await w.put(version("Practitioner", "p", owner="agenda-b", party="agenda-a"), {}, None)
        assert await visible_ids(s, VENDOR) == ["booked-a", "own-a", "s-a"]
        assert await visible_ids(s, OTHER) == ["booked-b", "p"]
        # the regulator reads every Appointment (the unlabelled slot is not of its types)
        assert await visible_ids(s, REGULATOR) == ["booked-a", "booked-b", "own-a", "p"]
        assert await s.read("Appointment", "booked-a", VENDOR) is not None
        assert await s.read("Appointment", "booked-a", OTHER) is None
        assert await s.read("Practitioner", "p", VENDOR) is None
    finally:
        await s.close()


async def test_the_party_is_kept_per_version(database_url: str) -> None:
    s = await open_migrated(database_url)
    try:
        async with s.writing() as w:
            await w.put(version("Appointment", "x", owner="reg", party="agenda-a"), {}, None)
        async with s.writing() as w:
            await w.prefetch([("Appointment", "x")])
            previous = await w.current("Appointment", "x")
            assert previous is not None and previous.party == "agenda-a"
            await w.put(version("Appointment", "x", 2, owner="reg", party="agenda-b"), {}, previous)
        async with s.writing() as w:
            current = await w.current("Appointment", "x")
            assert current is not None and (current.owner, current.party) == ("reg", "agenda-b")
        assert await s.vread("Appointment", "x", 1, VENDOR) is not None
        assert await s.vread("Appointment", "x", 2, VENDOR) is None
        assert await s.vread("Appointment", "x", 2, OTHER) is not None
        assert await s.read("Appointment", "x", VENDOR) is None
        seen = await s.history(
            res_type="Appointment",
            res_id="x",
            since=None,
            at=None,
            count=10,
            offset=0,
            caller=VENDOR,
        )
        assert [e.version for e in seen.entries] == [1] and seen.total == 1
    finally:
        await s.close()


APPOINTMENT = b'{"resourceType":"Appointment","slot":[{"reference":"Slot/s1"}]}'


async def test_0009_fills_the_party_of_stored_appointments(database_url: str) -> None:
    """Appointments stored before 0009 get the owner of their first slot as party, each
    version from its own content; other types and slot-less ones none; then the index."""
    store: Store = open_store(database_url)
    rows = [
        (1, "Slot", "s1", b'{"resourceType":"Slot"}', "agenda-a"),
        (2, "Appointment", "a1", APPOINTMENT, "reg"),
        (3, "Appointment", "a2", b'{"resourceType":"Appointment"}', "reg"),
        (4, "Appointment", "a3", b'{"slot":[{"reference":"Slot/unknown"}]}', "reg"),
        (5, "Schedule", "x", b'{"slot":[{"reference":"Slot/s1"}]}', None),
    ]
    try:
        async with store.writing() as w:
            await w.conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0008"))
            for pk, res_type, res_id, content, owner in rows:
                values = {"pk": pk, "t": res_type, "i": res_id, "c": content, "o": owner}
                for table, key in (("resources", "pk"), ("history", "res_pk")):
                    method = ", method" if table == "history" else ""
                    await w.conn.execute(
                        text(
                            f"INSERT INTO {table} ({key}, res_type, res_id, version,"
                            f" last_updated, deleted, content, owner{method}) VALUES (:pk, :t,"
                            f" :i, 1, '2026-01-01 00:00:00+00:00', false, :c, :o"
                            f"{', :m' if method else ''})"
                        ),
                        {**values, "m": "PUT"} if method else values,
                    )
        await store.migrate()
        async with store.reading() as r:
            for table, key in (("resources", "pk"), ("history", "res_pk")):
                found = await r.fetch(text(f"SELECT {key}, party FROM {table} ORDER BY 1"))
                assert [tuple(row) for row in found] == [
                    (1, None),
                    (2, "agenda-a"),
                    (3, None),
                    (4, None),
                    (5, None),
                ]
        async with store.writing() as w:
            names = await w.conn.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes("resources")}
            )
        assert "ix_resources_party" in names
        # and back down: the column and its index go
        async with store.writing() as w:
            await w.conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0008"))
            columns = await w.conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("resources")}
            )
        assert "party" not in columns
    finally:
        await store.close()
