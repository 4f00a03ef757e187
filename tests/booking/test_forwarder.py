"""The remote-owner hook (``Context.forwarder``): asked once per booking write with the slots
taken and left, before anything is written; its refusal changes nothing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server.core import errors
from fhir_server.storage.port import Stored
from tests.api.test_policy import Api
from tests.booking.conftest import appointments, at, booking, put_slot, send, slot_status


class Recorder:
    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.calls: list[tuple[list[str], list[str]]] = []
        self.reverted: list[tuple[list[str], list[str]]] = []

    def concerns(self, take: dict[str, Stored], leave: dict[str, Stored]) -> bool:
        return True  # every slot is remote here

    async def forward(
        self, appointment: dict[str, Any] | None, take: dict[str, Stored], leave: dict[str, Stored]
    ) -> None:
        self.calls.append((sorted(take), sorted(leave)))
        if self.refuse:
            raise errors.conflict("the owner refused: Slot taken at the vendor")

    async def revert(
        self, appointment: dict[str, Any] | None, take: dict[str, Stored], leave: dict[str, Stored]
    ) -> None:
        self.reverted.append((sorted(take), sorted(leave)))


def plug(api: Api, forwarder: Recorder) -> None:
    wiring = api.app.state.wiring
    api.app.state.wiring = replace(wiring, ctx=replace(wiring.ctx, forwarder=forwarder))


async def test_a_refusal_is_a_409_and_changes_nothing(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    refusing = Recorder(refuse=True)
    plug(api, refusing)
    r = await send(api, "regulator", "POST", "/Appointment", booking(slot))
    assert r.status_code == 409, r.text
    assert "owner refused" in r.json()["issue"][0]["diagnostics"]
    assert refusing.calls == [(["s1"], [])]
    assert await appointments(api) == []
    assert await slot_status(api, "s1") == ("free", "1")


async def test_take_and_leave_are_given_once_per_write(api: Api) -> None:
    old = await put_slot(api, "old", at(48))
    new = await put_slot(api, "new", at(72))
    agreeing = Recorder(refuse=False)
    plug(api, agreeing)
    apt = (await send(api, "regulator", "POST", "/Appointment", booking(old))).json()
    r = await send(
        api, "regulator", "PUT", f"/Appointment/{apt['id']}", {**booking(new), "id": apt["id"]}
    )
    assert r.status_code == 200, r.text
    assert agreeing.calls == [(["old"], []), (["new"], ["old"])]
    assert agreeing.reverted == []
