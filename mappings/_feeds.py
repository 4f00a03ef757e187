"""Helpers every format module may use on its feeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mappings.contract import MappingOptions, MappingResult


def reject_named(result: MappingResult) -> None:
    """Reject every feed an error names, wherever in the input the error was found: a
    snapshot missing a bad record would remove that record's slot."""
    named = {i.practitioner for i in result.issues if i.severity == "error"}
    for feed in result.feeds:
        if feed.key in named:
            feed.rejected = True


def default_window(options: MappingOptions) -> tuple[datetime, datetime]:
    """The window of a feed whose payload does not say which period it covers."""
    now = options.now or datetime.now(UTC)
    return now, now + timedelta(days=options.window_days)
