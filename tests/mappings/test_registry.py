"""Every format module registers one mapper under its name; unknown names say what exists."""

from __future__ import annotations

import pytest

from mappings import registry


def test_every_registered_format_is_a_mapper() -> None:
    for name, mapper in registry.formats().items():
        assert mapper.name == name and mapper.description
        assert callable(mapper.map)


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown format 'nope'"):
        registry.mapper("nope")
