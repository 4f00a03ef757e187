"""One input (a file, a URL's body, a request's body) mapped and reconciled, practitioner by
practitioner: a rejected practitioner never stops the others."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from fhir_server.ingest.precheck import unchanged_feeds
from fhir_server.ingest.reconcile import Vanished, findings_of, reconcile_feeds
from fhir_server.ingest.report import FeedReport, Finding, RunReport
from fhir_server.interactions.context import Context
from mappings.contract import Mapper, MappingOptions

log = structlog.get_logger(__name__)
Progress = Callable[[int, int], None]  # (feeds done, feeds in all)


async def ingest(
    ctx: Context,
    mapper: Mapper,
    data: bytes,
    options: MappingOptions,
    *,
    vanished: Vanished = "delete",
    progress: Progress | None = None,
) -> RunReport:
    result = mapper.map(data, options)
    report = RunReport(options.source)
    report.findings = [Finding.of(i) for i in result.issues if i.practitioner is None]
    # An issue naming a practitioner that has no feed still belongs in the report.
    keys = {feed.key for feed in result.feeds}
    report.findings += [
        Finding.of(i) for i in result.issues if i.practitioner and i.practitioner not in keys
    ]
    report.feeds = [FeedReport(f.key, findings=findings_of(f, result.issues)) for f in result.feeds]
    count = 0

    def done() -> None:
        nonlocal count
        count += 1
        if progress is not None:
            progress(count, len(result.feeds))

    # Feeds already stored as they are: found by one read per batch, no write transaction;
    # the others written several per transaction, each whole or not at all.
    same = await unchanged_feeds(ctx, result.feeds)
    await reconcile_feeds(ctx, result.feeds, report.feeds, vanished, unchanged=same, done=done)
    # Keys are the vendor's, never names: safe to log.
    log.info("ingested", source=options.source, format=mapper.name, **report.totals())
    return report
