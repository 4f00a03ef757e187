"""Recompute the search index of stored resources (``fhir-server reindex``).

Index rows are written with each resource, from the search parameters known at that moment.
When the definitions change (a FHIR package was installed or upgraded, the R4 table was
regenerated, an extractor was fixed), rows of resources already stored are stale: this walks
the current resources in ``pk`` order, one batch per write transaction, and replaces their
rows. Memory stays bounded by one batch; batches are keyset ranges, so the walk neither
skips nor repeats a resource, and a concurrent update of a resource in the batch waits for the
batch (rows are locked) instead of having its fresh rows overwritten with stale ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import ColumnElement, and_, func, select

from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.registry.parameters import Registry
from fhir_server.storage import schema
from fhir_server.storage.port import Store

DEFAULT_BATCH = 500


@dataclass(frozen=True)
class ReindexReport:
    resources: int
    rows: int
    batches: int


async def count_current(store: Store, res_type: str | None = None) -> int:
    """How many resources a reindex will visit (for a progress bar)."""
    res = schema.resources
    conditions: list[ColumnElement[bool]] = [res.c.deleted.is_(False)]
    if res_type is not None:
        conditions.append(res.c.res_type == res_type)
    async with store.reading() as session:
        rows = await session.fetch(select(func.count()).select_from(res).where(and_(*conditions)))
    return int(rows[0][0])


async def reindex(
    store: Store,
    registry: Registry,
    *,
    res_type: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> ReindexReport:
    """Rewrite the index rows of every current resource (of ``res_type`` when given).

    ``progress`` is called with the size of each committed batch.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    after, resources, rows, batches = 0, 0, 0, 0
    while True:
        async with store.writing() as session:
            batch = await session.scan(res_type, after, batch_size)
            for stored in batch:
                assert stored.pk is not None
                index = index_resource(registry, orjson.loads(stored.content))
                await session.replace_index(stored.pk, stored.res_type, index)
                rows += sum(len(kind_rows) for kind_rows in index.values())
        if not batch:
            break
        last = batch[-1].pk
        assert last is not None
        after = last
        resources += len(batch)
        batches += 1
        if progress is not None:
            progress(len(batch))
        if len(batch) < batch_size:
            break
    return ReindexReport(resources, rows, batches)
