"""The run log of docs/perf.md: a benchmark appends one section per run (its title with the
run's time, the command, the printed lines). The "current figures" table at the top is
edited by hand, from these sections."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "perf.md"


def append_run(title: str, command: str, lines: list[str], doc: Path = DOC) -> None:
    """Append ``## {title}, run of {now}`` with the command and ``lines`` as a code block."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [f"\n## {title}, run of {now}", "", f"- command: `{command}`", "", "```", *lines, "```", ""]
    )
    doc.write_text(doc.read_text().rstrip("\n") + "\n" + section)
