"""What an ingestion did, per practitioner: created / updated / removed / unchanged / rejected,
with the reasons (the mapper's issues and the store's errors), and its OperationOutcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.core.errors import Issue
from fhir_server.core.outcomes import outcome
from mappings.contract import Issue as MappingIssue

COUNTS = ("created", "updated", "removed", "unchanged", "rejected")


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason, with where it was found (``file:line``, ``file#/pointer`` or ``file``)."""

    severity: str
    code: str
    message: str
    location: str

    @classmethod
    def of(cls, issue: MappingIssue) -> Finding:
        return cls(issue.severity, issue.code, issue.message, issue.location)


@dataclass(slots=True)
class FeedReport:
    """One practitioner's feed: ``key`` the vendor's key (never a name: reports get logged)."""

    key: str
    created: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    rejected: int = 0
    findings: list[Finding] = field(default_factory=list)
    attempts: int = 1  # write transactions tried (a race with another ingest retries)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    def reset_counts(self) -> None:
        for name in COUNTS:
            setattr(self, name, 0)


@dataclass(slots=True)
class RunReport:
    source: str
    feeds: list[FeedReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # about the input as a whole

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(f, name) for f in self.feeds) for name in COUNTS}

    @property
    def unreadable(self) -> bool:
        """Nothing could be read: no feed at all and an error about the input."""
        return not self.feeds and any(f.severity == "error" for f in self.findings)


def to_outcome(report: RunReport) -> dict[str, Any]:
    """The OperationOutcome of a run: one information issue per practitioner with its counts,
    then every finding with its location (``issue.location``, R4's place for it)."""
    issues: list[tuple[Issue, str | None]] = []
    totals = report.totals()
    summary = ", ".join(f"{n} {name}" for name, n in totals.items())
    issues.append((Issue("informational", f"{report.source}: {summary}", "information"), None))
    for finding in report.findings:
        issues.append((_issue(finding), finding.location))
    for feed in report.feeds:
        counts = ", ".join(f"{n} {name}" for name, n in feed.counts().items())
        issues.append(
            (Issue("informational", f"practitioner {feed.key}: {counts}", "information"), None)
        )
        for finding in feed.findings:
            issues.append((_issue(finding), finding.location))
    body = outcome(i for i, _ in issues)
    for rendered, (_, location) in zip(body["issue"], issues, strict=True):
        if location:
            rendered["location"] = [location]
    return body


def _issue(finding: Finding) -> Issue:
    severity = finding.severity if finding.severity in ("error", "warning") else "information"
    return Issue(finding.code or "processing", finding.message, severity)
