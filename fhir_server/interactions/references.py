"""Referential integrity of writes: a relative reference must name a stored resource.

A ``Slot`` whose ``schedule`` names no Schedule is never found by the SAS searches, so a
write whose relative references (``Type/id``, ``Type/id/_history/n``) name a served type
but no current, non-deleted resource is refused with 400 ``not-found`` (as HAPI does),
every dangling reference named by its element (``Slot.schedule``,
``Appointment.participant[0].actor``) in one OperationOutcome. Not checked: contained
(``#id``), absolute URLs (another server's), ``urn:`` references a transaction did not
rewrite, references without ``reference`` (identifier or display only) and references to
types this server does not serve (``Patient/123``: the SAS keeps no patients).

One query checks every reference of a write (``FHIR_REFERENTIAL_INTEGRITY=false`` turns
the check off, for loads of data that arrives out of order). A transaction or a loaded file
collects the references of all its writes and checks them once, at its end: a reference to
a resource written earlier or later in the same unit is valid, one to a resource it deletes
is not. Deleting a resource that is still referenced is allowed (the referrers keep their
now dangling reference, as before the check existed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fhir_server.core import errors
from fhir_server.core.errors import Issue
from fhir_server.core.types import is_served
from fhir_server.storage.port import WriteSession

_RELATIVE = re.compile(r"^([A-Z][A-Za-z]{0,63})/([^/]+)(?:/_history/[^/]+)?$")

Key = tuple[str, str]  # (type, id)


def relative_references(resource: dict[str, Any]) -> Iterator[tuple[str, Key]]:
    """``(path, (type, id))`` of each checked reference; ``path`` is relative to the resource
    (``schedule``, ``participant[0].actor``)."""
    stack: list[tuple[str, Any]] = [("", resource)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and path:
                match = _RELATIVE.match(ref)
                if match and is_served(match.group(1)):
                    yield path, (match.group(1), match.group(2))
            children = [(f"{path}.{key}" if path else key, value) for key, value in node.items()]
        elif isinstance(node, list):
            children = [(f"{path}[{i}]", value) for i, value in enumerate(node)]
        else:
            continue
        # reversed: the stack pops them in document order
        stack.extend(c for c in reversed(children) if isinstance(c[1], dict | list))


class PendingReferences:
    """The references of the writes of one unit (a transaction, a loaded file), checked
    together by ``verify`` before it commits. A later version of a resource replaces the
    references of its earlier one; a deletion removes them."""

    def __init__(self) -> None:
        self._by_source: dict[Key, list[tuple[str, Key]]] = {}

    def wrote(self, res_type: str, res_id: str, resource: dict[str, Any] | None) -> None:
        source = (res_type, res_id)
        self._by_source.pop(source, None)
        if resource is not None:
            found = list(relative_references(resource))
            if found:
                self._by_source[source] = found

    async def verify(
        self, session: WriteSession, where: Callable[[str, str], str] | None = None
    ) -> None:
        """400 ``not-found`` naming each dangling reference. ``where(type, id)`` is the
        expression of a written resource (its type unless given, e.g.
        ``Bundle.entry[3].resource``)."""
        targets = {t for refs in self._by_source.values() for _, t in refs}
        if not targets:
            return
        state = await session.deleted_flags(targets)
        issues = []
        for (src_type, src_id), refs in self._by_source.items():
            prefix = where(src_type, src_id) if where else src_type
            for path, target in refs:
                deleted = state.get(target)
                if deleted is False:
                    continue
                why = "was deleted" if deleted else "is not known to this server"
                expression = f"{prefix}.{path}"
                issues.append(
                    Issue(
                        "not-found",
                        f"{target[0]}/{target[1]} {why} (referenced by {expression})",
                        expression=(expression,),
                    )
                )
        if issues:
            raise errors.incorrect_issues(issues)
