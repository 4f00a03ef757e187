"""One input (a file, a URL's body, a request's body) mapped and reconciled, practitioner by
practitioner: a rejected practitioner never stops the others."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from fhir_server.ingest.precheck import unchanged_feeds
from fhir_server.ingest.reconcile import Vanished, findings_of, reconcile
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
    # Feeds already stored as they are: found by one read per batch, no write transaction.
    same = await unchanged_feeds(ctx, result.feeds)
    for done, feed in enumerate(result.feeds, 1):
        feed_report = FeedReport(feed.key, findings=findings_of(feed, result.issues))
        if done - 1 in same:
            feed_report.unchanged = len(feed.resources) + len(feed.slots)
            feed_report.attempts = 0
        else:
            await reconcile(ctx, feed, feed_report, vanished)
        report.feeds.append(feed_report)
        if progress is not None:
            progress(done, len(result.feeds))
    # Keys are the vendor's, never names: safe to log.
    log.info("ingested", source=options.source, format=mapper.name, **report.totals())
    return report
