"""ValueSet expansion against local CodeSystems (self-written definitions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server.validation.packages import Conformance, load_conformance
from fhir_server.validation.terminology import Terminology

CS = "http://ex/cs/animals"


def _store(tmp_path: Path, *resources: dict[str, Any]) -> Conformance:
    store = load_conformance(tmp_path, [], core=False)
    for r in resources:
        store.add_resource(r)
    return store


def _animals(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "url": CS,
        "content": "complete",
        "concept": [
            {
                "code": "animal",
                "concept": [
                    {"code": "mammal", "concept": [{"code": "dog"}, {"code": "cat"}]},
                    {"code": "bird", "property": [{"code": "status", "valueCode": "retired"}]},
                ],
            },
            {"code": "fish", "property": [{"code": "parent", "valueCode": "animal"}]},
            {"code": "rock"},
        ],
        **extra,
    }


def _vs(url: str, compose: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "compose": compose}


def test_whole_system_concepts_and_filters(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        _animals(),
        _vs("http://ex/vs/all", {"include": [{"system": CS}]}),
        _vs("http://ex/vs/two", {"include": [{"system": CS, "concept": [{"code": "dog"}]}]}),
        _vs(
            "http://ex/vs/mammals",
            {
                "include": [
                    {
                        "system": CS,
                        "filter": [{"property": "concept", "op": "is-a", "value": "mammal"}],
                    }
                ],
                "exclude": [{"system": CS, "concept": [{"code": "mammal"}]}],
            },
        ),
        _vs(
            "http://ex/vs/animals",
            {
                "include": [
                    {
                        "system": CS,
                        "filter": [
                            {"property": "concept", "op": "descendent-of", "value": "animal"}
                        ],
                    }
                ]
            },
        ),
        _vs(
            "http://ex/vs/retired",
            {
                "include": [
                    {
                        "system": CS,
                        "filter": [{"property": "status", "op": "=", "value": "retired"}],
                    }
                ]
            },
        ),
    )
    t = Terminology(store)
    all_ = t.expansion("http://ex/vs/all")
    assert all_ is not None and all_.contains(CS, "rock") and not all_.contains(CS, "unicorn")
    assert t.expansion("http://ex/vs/two").contains(CS, "dog")  # type: ignore[union-attr]
    assert not t.expansion("http://ex/vs/two").contains(CS, "cat")  # type: ignore[union-attr]
    mammals = t.expansion("http://ex/vs/mammals")
    assert mammals is not None
    assert mammals.codes[CS] == {"dog", "cat"}
    animals = t.expansion("http://ex/vs/animals")
    assert animals is not None and animals.codes[CS] == {"mammal", "dog", "cat", "bird", "fish"}
    assert t.expansion("http://ex/vs/retired").codes[CS] == {"bird"}  # type: ignore[union-attr]
    assert all_.contains("http://other", "dog") is False
    assert all_.has_code("cat") is True
    assert t.expansion("http://ex/vs/nope") is None


def test_unknown_or_fragment_system_is_open(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        _animals(url="http://ex/cs/fragment", content="fragment"),
        _vs("http://ex/vs/unknown", {"include": [{"system": "http://ex/cs/absent"}]}),
        _vs("http://ex/vs/fragment", {"include": [{"system": "http://ex/cs/fragment"}]}),
        _vs(
            "http://ex/vs/badfilter",
            {
                "include": [
                    {"system": CS, "filter": [{"property": "x", "op": "generalizes", "value": "y"}]}
                ]
            },
        ),
        _animals(),
    )
    t = Terminology(store)
    for url in ("http://ex/vs/unknown", "http://ex/vs/fragment", "http://ex/vs/badfilter"):
        exp = t.expansion(url)
        assert exp is not None
        assert exp.contains(exp.systems[0], "anything") is None, url
        assert exp.has_code("anything") is None


def test_value_set_imports_intersect_and_case(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        _animals(caseSensitive=False),
        _vs(
            "http://ex/vs/a",
            {"include": [{"system": CS, "concept": [{"code": "dog"}, {"code": "cat"}]}]},
        ),
        _vs(
            "http://ex/vs/b",
            {"include": [{"system": CS, "concept": [{"code": "cat"}, {"code": "fish"}]}]},
        ),
        _vs("http://ex/vs/ab", {"include": [{"valueSet": ["http://ex/vs/a", "http://ex/vs/b"]}]}),
        _vs("http://ex/vs/self", {"include": [{"valueSet": ["http://ex/vs/self"]}]}),
        {
            "resourceType": "ValueSet",
            "url": "http://ex/vs/expanded",
            "expansion": {
                "contains": [
                    {"system": CS, "code": "rock", "contains": [{"system": CS, "code": "fish"}]}
                ]
            },
        },
    )
    t = Terminology(store)
    ab = t.expansion("http://ex/vs/ab")
    assert ab is not None and ab.codes[CS] == {"cat"}
    a = t.expansion("http://ex/vs/a")
    assert a is not None and a.contains(CS, "DOG")  # the CodeSystem is case-insensitive
    assert t.expansion("http://ex/vs/self") is not None  # no endless recursion
    expanded = t.expansion("http://ex/vs/expanded")
    assert expanded is not None and expanded.codes[CS] == {"rock", "fish"}
