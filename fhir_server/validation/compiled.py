"""The compiled form of a profile: one ``Element`` per snapshot element, linked as a tree.

Built once per profile by ``snapshot.Compiler`` and then only read while validating: what a
JSON key maps to (``Kids.keys``, choice types expanded: ``valueString`` -> ``value[x]``),
which children are required, fixed and pattern values, bindings, invariants and slices.
Children that a snapshot does not list (``Slot.identifier.period.start``) come from the
compiled base data type, resolved on first use and cached on the element.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from fhir_server.validation.context import Frame

UNBOUNDED: Final = sys.maxsize


class _Nothing:
    """No fixed or pattern value (``None`` cannot say it: JSON null is a value)."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Final = _Nothing()

PRIMITIVES: Final = frozenset(
    {
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    }
)
SYSTEM_TYPES: Final = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}


@dataclass(slots=True, eq=False)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()  # targetProfile canonicals
    target_types: frozenset[str] = frozenset()  # resource types they constrain; empty = any
    aggregation: frozenset[str] = frozenset()
    is_resource: bool = False
    primitive: bool = False

    def __post_init__(self) -> None:
        self.primitive = self.code in PRIMITIVES


@dataclass(slots=True, eq=False)
class Binding:
    strength: str
    value_set: str
    expansion: Any = NOTHING  # the terminology's Expansion (or None), looked up once


# A check returns True (holds), False (violated) or None (could not be evaluated).
Check = Callable[[Any, "Frame", "Element"], bool | None]


@dataclass(slots=True, eq=False)
class Constraint:
    key: str
    severity: str  # "error" | "warning"
    human: str
    expression: str
    check: Check
    best_practice: bool = False
    human_fr: str = ""  # supplements carry their own French text


@dataclass(slots=True, eq=False)
class Slicing:
    discriminators: tuple[tuple[str, str], ...]  # (type, path)
    rules: str  # open | closed | openAtEnd
    ordered: bool


# A slice matcher: does this item belong to the slice? (item, frame)
Matcher = Callable[[Any, "Frame"], bool]


@dataclass(slots=True, eq=False)
class Slice:
    name: str
    element: Element
    matcher: Matcher | None = None  # set once the tree is complete


@dataclass(slots=True, eq=False)
class Kids:
    """What the keys of a JSON object mean, for one element and type."""

    keys: dict[str, tuple[Element, TypeRef]]
    required: tuple[tuple[Element, tuple[str, ...]], ...]  # (element, its JSON keys)
    choices: tuple[tuple[Element, tuple[str, ...]], ...]  # at most one key of each may appear


@dataclass(slots=True, eq=False)
class Element:
    id: str
    path: str  # snapshot path, no slice names ("Slot.serviceType.coding")
    name: str  # FHIR name without [x] ("serviceType", "value")
    choice: bool
    min: int
    max: int
    array: bool  # JSON array (the base element repeats), whatever the profile's max
    types: tuple[TypeRef, ...]
    fixed: Any = NOTHING
    pattern: Any = NOTHING
    max_length: int | None = None
    binding: Binding | None = None
    constraints: tuple[Constraint, ...] = ()
    slicing: Slicing | None = None
    slices: list[Slice] = field(default_factory=list)
    type_slices: dict[str, Element] = field(default_factory=dict)  # value[x]:valueString
    children: list[Element] = field(default_factory=list)
    content_ref: str | None = None
    slice_name: str | None = None
    kids_cache: dict[str, Kids | None] = field(default_factory=dict)
    plain: bool = False  # nothing to check beyond the type (set by the compiler)
    is_extension: bool = False  # extension or modifierExtension

    def key_for(self, type_code: str) -> str:
        return self.name + type_code[:1].upper() + type_code[1:] if self.choice else self.name

    def child(self, name: str) -> Element | None:
        for c in self.children:
            if c.name == name:
                return c
        return None

    @property
    def effective_min(self) -> int:
        """The element's min, or more when slices require items."""
        low = self.min
        for s in self.slices:
            low = max(low, s.element.min)
        for t in self.type_slices.values():
            low = max(low, t.min)
        return low


@dataclass(slots=True, eq=False)
class Profile:
    """A compiled StructureDefinition."""

    url: str
    type: str
    kind: str  # resource | complex-type | primitive-type | logical
    root: Element
    title: str
    contexts: tuple[tuple[str, str], ...] = ()  # extensions: (type, expression)
    derivation: str = ""


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern[x]: every part of the pattern is in the value (arrays: each pattern
    item matches some value item)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        return all(any(matches_pattern(v, p) for v in value) for p in pattern)
    if isinstance(pattern, bool) or isinstance(value, bool):
        return type(pattern) is type(value) and pattern == value
    return bool(value == pattern)


def matches_fixed(value: Any, fixed: Any) -> bool:
    """FHIR fixed[x]: exactly the value (object keys in any order)."""
    if isinstance(fixed, bool) or isinstance(value, bool):
        return type(fixed) is type(value) and fixed == value
    return bool(value == fixed)
