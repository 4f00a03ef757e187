"""The README's configuration table names every setting (a newcomer reads it, not the code)."""

from __future__ import annotations

from pathlib import Path

from fhir_server.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text()
    rows = {
        line.split("|")[1].strip(" `") for line in text.splitlines() if line.startswith("| `FHIR_")
    }
    wanted = {f"FHIR_{name.upper()}" for name in Settings.model_fields}
    assert wanted - rows == set(), "settings missing from the README's configuration table"
    assert rows - wanted == set(), "README rows for settings that do not exist"
