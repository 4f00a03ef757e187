"""A remote vendor's SAS FHIR API for forwarding tests: a real HTTP(S) server on loopback, in
a thread, that books its own slots. ``POST /Appointment`` books (201) the slot it names,
honouring ``If-None-Exist`` (the same identifier again answers the first appointment, 200),
and answers 409 with an OperationOutcome when the slot is taken; ``PUT
/Appointment?identifier=`` updates (cancel frees the slot). ``script`` makes the next
requests misbehave: a status (with an OperationOutcome), ``hang`` (no answer until the
server stops), ``slow`` (the answer after ``delay`` seconds, the booking made first) or
``drop`` (the booking made, the connection closed without an answer)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson


@dataclass
class Vendor:
    base: str = ""
    script: list[int | str] = field(default_factory=list)  # status, hang, slow, drop
    delay: float = 0.0
    appointments: dict[str, dict[str, Any]] = field(default_factory=dict)  # by identifier
    taken: dict[str, str] = field(default_factory=dict)  # slot id -> identifier
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    created: int = 0
    searchset: bytes = b""  # the answer to GET .../Slot (the SAS slot search), for pulls
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def count(self, method: str) -> int:
        with self.lock:
            return sum(1 for m, _, _ in self.requests if m == method)


def outcome(text: str) -> bytes:
    issue = {"severity": "error", "code": "conflict", "diagnostics": text}
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]})


def _handler(vendor: Vendor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return orjson.loads(self.rfile.read(length)) if length else None

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _scripted(self) -> tuple[int | str | None, bool]:
            with vendor.lock:
                step = vendor.script.pop(0) if vendor.script else None
            if step == "hang":
                vendor.stopping.wait(60)
                self.close_connection = True
                return step, True
            if isinstance(step, int):
                self._answer(step, outcome(f"scripted {step}"))
                return step, True
            return step, False

        def do_GET(self) -> None:
            with vendor.lock:
                vendor.requests.append(("GET", self.path, dict(self.headers.items())))
            if urlsplit(self.path).path.endswith("/Slot") and vendor.searchset:
                self._answer(200, vendor.searchset)
            else:
                self._answer(404, outcome("not found"))

        def do_POST(self) -> None:
            body = self._body()
            with vendor.lock:
                vendor.requests.append(("POST", self.path, dict(self.headers.items())))
            step, done = self._scripted()
            if done:
                return
            status, answer = self._book(body)
            if step == "drop":  # booked, then the connection lost before the answer
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if step == "slow":
                vendor.stopping.wait(vendor.delay)
            self._answer(status, answer)

        def _book(self, body: Any) -> tuple[int, bytes]:
            if not urlsplit(self.path).path.endswith("/Appointment") or not isinstance(body, dict):
                return 400, outcome("not an Appointment")
            key = self.headers.get("If-None-Exist", "").removeprefix("identifier=")
            slot = str(((body.get("slot") or [{}])[0]).get("reference", "")).split("/")[-1]
            with vendor.lock:
                if key and key in vendor.appointments:
                    return 200, orjson.dumps(vendor.appointments[key])
                if slot in vendor.taken:
                    return 409, outcome(f"le créneau {slot} est déjà réservé")
                vendor.created += 1
                stored = {**body, "id": f"rdv-{vendor.created}", "status": "booked"}
                vendor.appointments[key] = stored
                vendor.taken[slot] = key
            return 201, orjson.dumps(stored)

        def do_PUT(self) -> None:
            body = self._body()
            with vendor.lock:
                vendor.requests.append(("PUT", self.path, dict(self.headers.items())))
            _step, done = self._scripted()
            if done:
                return
            query = parse_qs(urlsplit(self.path).query)
            key = unquote((query.get("identifier") or [""])[0])
            with vendor.lock:
                stored = vendor.appointments.get(key)
                if stored is None or not isinstance(body, dict):
                    answer = (404, outcome("unknown appointment"))
                else:
                    stored.update({k: v for k, v in body.items() if k != "id"})
                    if stored.get("status") == "cancelled":
                        vendor.taken = {s: k for s, k in vendor.taken.items() if k != key}
                    answer = (200, orjson.dumps(stored))
            self._answer(*answer)

    return Handler


IDNPS = {"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203", "code": "IDNPS"}
LOCATION_INTRN = {
    "system": "http://interopsante.org/fhir/CodeSystem/fr-location-identifier-type",
    "code": "INTRN",
}
PUBLIC = {
    "system": "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau",
    "code": "PUBLIC",
}
SLOT_PROFILE = "http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"


def searchset(slots: dict[str, datetime], rpps: str = "10000000015") -> bytes:
    """A SAS slot search answer: one practitioner (``8`` + ``rpps``), its Schedule and
    Role, and a free 15-minute Slot per (vendor id, start)."""
    entries: list[dict[str, Any]] = [
        {
            "resourceType": "Practitioner",
            "id": "pr-1",
            "identifier": [
                {
                    "type": {"coding": [IDNPS]},
                    "system": "urn:oid:1.2.250.1.71.4.2.1",
                    "value": "8" + rpps,
                }
            ],
            "name": [{"family": "Martinot", "given": ["Agathe"]}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "role-1",
            "contained": [
                {
                    "resourceType": "Location",
                    "id": "l1",
                    "identifier": [
                        {
                            "type": {"coding": [LOCATION_INTRN]},
                            "system": "urn:oid:1.1.111.1.111.1.1.1",
                            "value": "cab-1",
                        }
                    ],
                    "address": {
                        "line": ["9 allée des Peupliers"],
                        "city": "Agen",
                        "postalCode": "47000",
                    },
                }
            ],
            "practitioner": {"reference": "Practitioner/pr-1"},
            "location": [{"reference": "#l1"}],
        },
        {
            "resourceType": "Schedule",
            "id": "sch-1",
            "actor": [{"reference": "Practitioner/pr-1"}, {"reference": "PractitionerRole/role-1"}],
        },
    ]
    for rid, start in slots.items():
        entries.append(
            {
                "resourceType": "Slot",
                "id": rid,
                "meta": {"profile": [SLOT_PROFILE], "security": [PUBLIC]},
                "serviceType": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "AMB",
                            }
                        ]
                    }
                ],
                "schedule": {"reference": "Schedule/sch-1"},
                "status": "free",
                "start": start.isoformat(timespec="milliseconds"),
                "end": (start + timedelta(minutes=15)).isoformat(timespec="milliseconds"),
            }
        )
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(slots),
            "entry": [
                {
                    "resource": r,
                    "search": {"mode": "match" if r["resourceType"] == "Slot" else "include"},
                }
                for r in entries
            ],
        }
    )


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # racing clients: not reset by a short listen backlog
    daemon_threads = True


@contextmanager
def vendor_server(tls: SSLContext | None = None) -> Iterator[Vendor]:
    vendor = Vendor()
    httpd = _Server(("127.0.0.1", 0), _handler(vendor))
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    vendor.base = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield vendor
    finally:
        vendor.stopping.set()
        httpd.shutdown()
        httpd.server_close()
