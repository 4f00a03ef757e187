"""The access policy: who may do which interaction on which resource type, and see which rows.

Pure decisions, no I/O and nothing of the server: the server asks ``Policy.may`` before every
interaction (every transaction and batch entry too), ``Policy.may_change`` before a write
touches a stored resource (its owner), and ``Policy.read_scope`` for the rows a caller may
see (storage turns it into one where-clause; the availability cache into a test of its
cached slot labels). Roles (docs/design.md, Security):

- **vendor**: an agenda vendor's system. Writes its own directory and slots (Practitioner,
  PractitionerRole, Schedule, Slot, and the Location/Organization/HealthcareService the CPTS
  and SOS answers carry) and the Appointments it sends the platform (INT_R03); reads only
  what it wrote (the owner is recorded at write time), and the Appointments booked on its
  slots (it is their *party*: the slots' owner, recorded at booking), of which it changes
  only the status (``PARTY_STATUSES``) and the elements of ``PARTY_ELEMENTS``.
- **regulator**: searches and reads everything but AuditEvent, Slots only of the types
  (TRE-R314 labels in ``meta.security``) its role may see; creates Appointments (booking)
  and may correct the ones it made.
- **platform**: the SAS platform or a national instance. Reads everything but AuditEvent,
  manages regulator accounts (Practitioner, PractitionerRole: INT_R02), receives
  Appointments.
- **admin**: everything, reading AuditEvents included; nobody writes AuditEvents but the
  server's own audit trail.

A caller with SMART scopes (``auth/scopes.py``) is limited to them as well; without any, its
role alone decides. Only admin changes a resource someone else owns; a resource written by
the server itself (``fhir-server load``) has no owner; an Appointment's party changes
what happens at the practice (``may_change``). ``python -m auth.policy`` writes the
role x interaction x type table (docs/policy.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from auth.scopes import Access, Scope, granted, readable_types
from auth.scopes import smart_scopes as _parse_scopes

# The resource types the server serves (``fhir_server.core.types``; a test keeps them equal).
TYPES: tuple[str, ...] = (
    "Appointment",
    "AuditEvent",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Schedule",
    "Slot",
    "Subscription",
)
READS: tuple[str, ...] = ("read", "vread", "search", "history", "operation")
WRITES: tuple[str, ...] = ("create", "update", "patch", "delete")
INTERACTIONS: tuple[str, ...] = READS + WRITES
ROLES: tuple[str, ...] = ("vendor", "regulator", "platform", "admin")
INGEST_ROLES = frozenset({"vendor", "admin"})  # may POST [base]/$ingest (docs/ingest.md)
# may book on the web page behind Slot.comment (docs/booking-page.md): the SAS guide's
# Appointment names the regulator who booked (FrAppointmentOperator); other roles book,
# if at all, through the API
PAGE_BOOKING_ROLES = frozenset({"regulator"})


@lru_cache(maxsize=4096)
def smart_scopes(texts: frozenset[str]) -> tuple[Scope, ...]:
    """A caller's SMART scopes, parsed once per distinct set (every request asks)."""
    return _parse_scopes(texts)


# -- slot labels (meta.security, TRE-R314 TypeCreneau) ----------------------------------------

TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
SLOT_TYPES: tuple[str, ...] = ("PUBLIC", "PRO", "SNP", "CPTS")
# A Slot without any TRE-R314 label (the SAS profiles require one: data loaded without
# validation, or from elsewhere): a pseudo-type, shown only to the roles configured for it.
UNLABELLED = "UNLABELLED"
LABELS: tuple[str, ...] = (*SLOT_TYPES, UNLABELLED)
DEFAULT_SLOT_VISIBILITY: Mapping[str, tuple[str, ...]] = {
    "regulator": ("PUBLIC", "PRO", "SNP"),
    "platform": LABELS,
    "admin": LABELS,
}


def slot_labels(resource: Mapping[str, Any]) -> str | None:
    """A Slot's TRE-R314 codes as stored for SQL filtering (``|PRO|PUBLIC|``: sorted, each
    between bars, so ``LIKE '%|PRO|%'`` finds one); ``|UNLABELLED|`` without any; None for
    other types."""
    if resource.get("resourceType") != "Slot":
        return None
    meta = resource.get("meta")
    security = meta.get("security") if isinstance(meta, Mapping) else None
    codes = {
        str(c.get("code"))
        for c in (security if isinstance(security, list) else [])
        if isinstance(c, Mapping) and c.get("system") == TYPE_CRENEAU and c.get("code")
    }
    return "|" + "|".join(sorted(codes or {UNLABELLED})) + "|"


def label_set(text: str | None) -> frozenset[str]:
    """The codes of a stored labels text (None, for a Slot written before labels: none)."""
    if not text:
        return frozenset({UNLABELLED})
    return frozenset(c for c in text.split("|") if c)


# -- who asks ----------------------------------------------------------------------------------


class Who(Protocol):
    """What the policy reads of a caller (``fhir_server.core.caller.Caller``)."""

    @property
    def role(self) -> str: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def scopes(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    element: str | None = None  # the element a refused change touches (FHIRPath)

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)


@dataclass(frozen=True, slots=True)
class ReadScope:
    """The rows a caller may see. Every condition applies (an empty scope: every row)."""

    owner_only: bool = False  # only the rows whose owner is ``owner`` (None: unowned rows)
    owner: str | None = None
    types: frozenset[str] | None = None  # only these types (None: every type not in never)
    never: frozenset[str] = frozenset()
    slot_labels: frozenset[str] | None = None  # Slots with one of these labels (None: all)
    own_types: frozenset[str] = frozenset()  # of these types, only the rows ``owner`` owns
    # of these types, also the rows whose party is ``owner`` (with ``owner_only``)
    party_types: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return self == EVERYTHING

    def type_ok(self, res_type: str) -> bool:
        if self.types is not None and res_type not in self.types:
            return False
        return res_type not in self.never

    def whole_type(self, res_type: str) -> bool:
        """Every row of ``res_type`` is visible (no owner or label condition on it)."""
        if not self.type_ok(res_type) or self.owner_only or res_type in self.own_types:
            return False
        return res_type != "Slot" or self.slot_labels is None

    def labels_ok(self, labels: str | None) -> bool:
        return self.slot_labels is None or not self.slot_labels.isdisjoint(label_set(labels))

    def admits(
        self, res_type: str, owner: str | None, labels: str | None, party: str | None = None
    ) -> bool:
        """Whether one stored row is visible (rows already read, e.g. a transaction's GET)."""
        if not self.type_ok(res_type):
            return False
        if (self.owner_only or res_type in self.own_types) and owner != self.owner:
            is_party = res_type in self.party_types and party is not None
            if not (self.owner_only and is_party and party == self.owner):
                return False
        return res_type != "Slot" or self.labels_ok(labels)


EVERYTHING = ReadScope()

# -- the rules ---------------------------------------------------------------------------------

_ALL_WRITES = frozenset(WRITES)
_CHANGE = frozenset({"create", "update", "patch"})
# role -> type -> the write interactions allowed (a type not named: none)
WRITE_RULES: Mapping[str, Mapping[str, frozenset[str]]] = {
    "vendor": {
        **{
            t: _ALL_WRITES
            for t in (
                "Practitioner",
                "PractitionerRole",
                "Schedule",
                "Slot",
                "Location",
                "Organization",
                "HealthcareService",
            )
        },
        "Appointment": _CHANGE,  # INT_R03: vendor -> platform; cancelled, never deleted
        "Subscription": _ALL_WRITES,  # its own (OWN_TYPES), notified of what it may read
    },
    "regulator": {"Appointment": _CHANGE, "Subscription": _ALL_WRITES},  # booking; its own
    "platform": {
        "Practitioner": _ALL_WRITES,  # INT_R02 regulator accounts
        "PractitionerRole": _ALL_WRITES,
        "Appointment": _CHANGE,
        "Subscription": _ALL_WRITES,
    },
    # AuditEvents are the server's own record (fhir_server/audit): no client writes them,
    # not even admin; the audit writer writes as the server itself (SYSTEM), outside roles
    "admin": {t: _ALL_WRITES for t in TYPES if t != "AuditEvent"},
}
# role -> the types it reads (vendor: only its own rows of them)
READ_RULES: Mapping[str, frozenset[str]] = {
    "vendor": frozenset(WRITE_RULES["vendor"]),
    "regulator": frozenset(TYPES) - {"AuditEvent"},
    "platform": frozenset(TYPES) - {"AuditEvent"},
    "admin": frozenset(TYPES),
}
OWNER_ONLY_READS = frozenset({"vendor"})
# The types with a party (``resources.party``: an Appointment's slot owner), who reads them
# besides their owner and changes only what happens at the practice: the status (to one of
# PARTY_STATUSES), and the elements below. Everything else stays the booker's (403).
PARTY_TYPES = frozenset({"Appointment"})
PARTY_STATUSES = frozenset({"booked", "arrived", "checked-in", "fulfilled", "noshow", "cancelled"})
PARTY_ELEMENTS = frozenset({"status", "cancelationReason", "comment"})
# meta the server stamps at every write: a party's PUT may carry the old values or none
_STAMPED_META = frozenset({"versionId", "lastUpdated", "source"})
# types every role but admin reads only its own rows of (a Subscription's channel headers
# may hold the subscriber's secrets: docs/subscriptions.md)
OWN_TYPES = frozenset({"Subscription"})


class Policy:
    """The decisions for one configuration (``FHIR_SLOT_VISIBILITY``: role -> slot labels)."""

    def __init__(self, slot_visibility: Mapping[str, Iterable[str]] | None = None) -> None:
        visibility = {**DEFAULT_SLOT_VISIBILITY, **(slot_visibility or {})}
        self.slot_visibility: dict[str, frozenset[str]] = {}
        for role, labels in visibility.items():
            if role not in ROLES or role == "vendor":
                raise ValueError(
                    f"slot visibility for {role!r}: name regulator, platform or admin"
                    " (a vendor sees its own slots, whatever their labels)"
                )
            wanted = frozenset(labels)
            unknown = wanted - set(LABELS)
            if unknown:
                raise ValueError(
                    f"slot visibility for {role!r}: unknown label(s) {', '.join(sorted(unknown))}"
                    f" (use {', '.join(LABELS)})"
                )
            self.slot_visibility[role] = wanted
        self._scopes: dict[Who, ReadScope] = {}  # read_scope's answers (a caller's are fixed)

    def may(self, who: Who, interaction: str, res_type: str) -> Decision:
        """Whether ``who`` may do ``interaction`` (``INTERACTIONS``) on ``res_type`` at all."""
        role = who.role
        if role not in ROLES:
            return Decision(False, f"unknown role {role!r}")
        if interaction in READS:
            allowed = res_type in READ_RULES[role]
            access: Access = "read"
        elif interaction in WRITES:
            allowed = interaction in WRITE_RULES[role].get(res_type, frozenset())
            access = "write"
        else:
            return Decision(False, f"unknown interaction {interaction!r}")
        if not allowed:
            return Decision(False, f"the {role} role may not {interaction} {res_type} resources")
        scopes = smart_scopes(who.scopes)
        if scopes and not granted(scopes, res_type, access):
            return Decision(
                False,
                f"no SMART scope of the token grants {interaction} on {res_type}"
                f" (needs user/{res_type}.{access} or system/{res_type}.{access})",
            )
        return ALLOWED

    @staticmethod
    def may_ingest(who: Who) -> Decision:
        """Whether ``who`` may call ``$ingest`` (a vendor's feed, or an admin's): each write
        it makes is then checked as any other (``may_change``)."""
        if who.role in INGEST_ROLES:
            return ALLOWED
        return Decision(False, f"the {who.role} role may not ingest vendor feeds ($ingest)")

    def may_book_on_page(self, who: Who) -> Decision:
        """Whether a signed-in person may book on the booking page: a regulator, who may
        also create Appointments (``may``)."""
        if who.role not in PAGE_BOOKING_ROLES:
            return Decision(False, f"the {who.role} role does not book on the booking page")
        return self.may(who, "create", "Appointment")

    @staticmethod
    def may_see_pull_status(who: Who) -> Decision:
        """Whether ``who`` may read ``$pull-status`` (the pulled sources' freshness,
        docs/pull.md): the operators' view, admins only."""
        if who.role == "admin":
            return ALLOWED
        return Decision(False, f"the {who.role} role may not read $pull-status (admin only)")

    @staticmethod
    def may_see_delivery_status(who: Who) -> Decision:
        """Whether ``who`` may read ``$delivery-status`` (the outbox's counts and errors,
        docs/delivery.md): the operators' view, admins only."""
        if who.role == "admin":
            return ALLOWED
        return Decision(False, f"the {who.role} role may not read $delivery-status (admin only)")

    @staticmethod
    def owner_of(who: Who) -> str | None:
        """Who owns what ``who`` creates: its client (software), else the person; None for
        an anonymous caller (FHIR_AUTH=none), whose rows are the unowned ones."""
        return who.client_id or who.user_id

    def may_change(
        self,
        who: Who,
        interaction: str,
        res_type: str,
        res_id: str,
        owner: str | None,
        party: str | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> Decision:
        """``may`` plus: a stored resource is changed only by its owner, or by admin, or
        (``PARTY_TYPES``) by its party within ``party_change``'s limits (``before``: the
        stored content, ``after``: the new one; None: unknown, refused)."""
        decision = self.may(who, interaction, res_type)
        if not decision or who.role == "admin":
            return decision
        me = self.owner_of(who)
        if owner == me:
            return ALLOWED
        if res_type in PARTY_TYPES and party is not None and party == me:
            if interaction not in ("update", "patch") or before is None or after is None:
                return Decision(
                    False,
                    f"the {who.role} role may not {interaction} {res_type}/{res_id}: as the"
                    " party of its slots it only updates its status",
                )
            return self.party_change(res_type, res_id, before, after)
        return Decision(
            False,
            f"the {who.role} role may not {interaction} {res_type}/{res_id}:"
            " it was written by another client",
        )

    @staticmethod
    def party_change(
        res_type: str, res_id: str, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> Decision:
        """A party's change: the status to one of ``PARTY_STATUSES``, ``PARTY_ELEMENTS``
        and the participants' ``status``; the first other element changed is named."""
        status = after.get("status")
        if status != before.get("status") and status not in PARTY_STATUSES:
            return Decision(
                False,
                f"the party of {res_type}/{res_id} may set its status to"
                f" {', '.join(sorted(PARTY_STATUSES))}, not {status!r}",
                f"{res_type}.status",
            )
        for key in sorted({*before, *after} - PARTY_ELEMENTS):
            if key == "meta":
                changed = _meta(before.get(key)) != _meta(after.get(key))
            elif key == "participant":
                changed = _participants(before.get(key)) != _participants(after.get(key))
            else:
                changed = before.get(key) != after.get(key)
            if changed:
                return Decision(
                    False,
                    f"the party of {res_type}/{res_id} (the owner of its slots) may change"
                    f" only its status, {', '.join(sorted(PARTY_ELEMENTS - {'status'}))}"
                    f" and participant.status, not {key}",
                    f"{res_type}.{key}",
                )
        return ALLOWED

    def read_scope(self, who: Who) -> ReadScope:
        """What ``who`` may see (asked for every session and point read: remembered)."""
        found = self._scopes.get(who)
        if found is None:
            if len(self._scopes) >= 4096:
                self._scopes.clear()  # many distinct callers: start again, never grow
            found = self._scopes[who] = self._read_scope(who)
        return found

    def _read_scope(self, who: Who) -> ReadScope:
        role = who.role
        if role not in ROLES:
            return ReadScope(types=frozenset())
        readable = READ_RULES[role]
        scopes = smart_scopes(who.scopes)
        types: frozenset[str] | None = None
        never = frozenset(TYPES) - readable
        if scopes:
            types = readable_types(scopes, readable)
            never = frozenset()
        labels: frozenset[str] | None = None
        if role != "vendor":
            allowed = self.slot_visibility.get(role, frozenset(LABELS))
            labels = None if allowed >= set(LABELS) else allowed
        owner_only = role in OWNER_ONLY_READS
        own_types = OWN_TYPES if role != "admin" else frozenset()
        return ReadScope(
            owner_only=owner_only,
            party_types=PARTY_TYPES & readable if owner_only else frozenset(),
            owner=self.owner_of(who) if owner_only or own_types else None,
            own_types=own_types,
            types=types,
            never=never,
            slot_labels=labels,
        )

    # -- the generated table ---------------------------------------------------------------

    def table(self) -> str:
        """docs/policy.md: every role x interaction x type cell, and the read limits."""

        @dataclass(frozen=True)
        class _Anonymous:
            role: str
            client_id: str | None = "client"
            user_id: str | None = None
            scopes: frozenset[str] = frozenset()

        lines = [
            "# Access policy",
            "",
            "Generated by `python -m auth.policy` from `auth/policy.py` (a test fails when this",
            "file is stale). **Y**: allowed; **own**: allowed on the resources the caller wrote",
            "(the owner recorded at write time: its client id, else its user id); **-**: 403.",
            "A caller with SMART v1 scopes (`system/Slot.read`, `user/*.write`...) is limited",
            "to them as well. Invisible resources answer 404 (their existence is not revealed).",
            "**party**: also on the Appointments booked on the caller's slots (the slots' owner,",
            "recorded at booking), changing only `status`, `"
            + "`, `".join(sorted(PARTY_ELEMENTS - {"status"}))
            + "` and `participant.status`",
            "(status to " + ", ".join(sorted(PARTY_STATUSES)) + "; docs/booking.md).",
            "",
            "Operations: `$ingest` for "
            + ", ".join(r for r in ROLES if self.may_ingest(_Anonymous(r)))
            + "; `$pull-status` for "
            + ", ".join(r for r in ROLES if self.may_see_pull_status(_Anonymous(r)))
            + "; `$delivery-status` for "
            + ", ".join(r for r in ROLES if self.may_see_delivery_status(_Anonymous(r)))
            + ".",
            "",
        ]
        for role in ROLES:
            who = _Anonymous(role)
            lines += [f"## {role}", "", "| type | " + " | ".join(INTERACTIONS) + " |"]
            lines.append("| --- |" + " --- |" * len(INTERACTIONS))
            scope = self.read_scope(who)
            for res_type in TYPES:
                cells = []
                for interaction in INTERACTIONS:
                    if not self.may(who, interaction, res_type):
                        cells.append("-")
                    elif interaction in READS:
                        if scope.whole_type(res_type):
                            cells.append("Y")
                        else:
                            mine = res_type in scope.party_types
                            cells.append("own, party" if mine else "own")
                        if (
                            res_type == "Slot"
                            and not scope.owner_only
                            and not scope.whole_type(res_type)
                        ):
                            cells[-1] = "labels"
                    else:
                        changes_stored = interaction != "create" and role != "admin"
                        party = res_type in PARTY_TYPES and interaction in ("update", "patch")
                        cell = "own, party" if party else "own"
                        cells.append(cell if changes_stored else "Y")
                lines.append(f"| {res_type} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [
            "## Slot visibility (`FHIR_SLOT_VISIBILITY`)",
            "",
            "**labels** above: the Slots whose `meta.security` (TRE-R314 TypeCreneau) has one",
            f"of the role's types; a Slot without any counts as `{UNLABELLED}`. A vendor sees",
            "its own slots whatever their labels.",
            "",
            "| role | slot types it sees |",
            "| --- | --- |",
        ]
        for role in ("regulator", "platform", "admin"):
            shown = self.slot_visibility.get(role, frozenset(LABELS))
            lines.append(f"| {role} | {', '.join(c for c in LABELS if c in shown)} |")
        return "\n".join(lines) + "\n"


def _meta(meta: Any) -> Any:
    """``meta`` without what the server stamps (a party's PUT need not echo it)."""
    if not isinstance(meta, Mapping):
        return meta
    kept = {k: v for k, v in meta.items() if k not in _STAMPED_META}
    return kept or None


def _participants(participants: Any) -> Any:
    """The participants without their status (the party may change each one's)."""
    if not isinstance(participants, list):
        return participants
    return [
        {k: v for k, v in p.items() if k != "status"} if isinstance(p, Mapping) else p
        for p in participants
    ]


DOC = Path(__file__).resolve().parent.parent / "docs" / "policy.md"


def main(argv: list[str] | None = None) -> int:
    """Write docs/policy.md (the default policy) or the path given."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DOC
    target.write_text(Policy().table())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
