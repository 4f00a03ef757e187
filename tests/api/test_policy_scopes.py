"""SMART v1 scopes narrow a role, through real Bearer tokens from the dev IdP (a platform
system whose client-credentials token carries ``system/Slot.read`` only)."""

from __future__ import annotations

import httpx

from tests.api.test_bearer import api, app, bearer, idp, system_token  # noqa: F401
from tests.auth.dev_idp.conftest import Idp


async def test_a_token_reads_only_what_its_scopes_grant(api: httpx.AsyncClient, idp: Idp) -> None:  # noqa: F811
    token = bearer(system_token(idp))
    assert (await api.get("/Slot", headers=token)).status_code == 200
    refused = await api.get("/Practitioner", headers=token)
    assert refused.status_code == 403, refused.text
    diagnostics = refused.json()["issue"][0]["diagnostics"]
    assert "SMART scope" in diagnostics and "Practitioner.read" in diagnostics
    # the platform role may create a Practitioner (regulator accounts); this token may not
    practitioner = {"resourceType": "Practitioner", "active": True}
    created = await api.post(
        "/Practitioner",
        json=practitioner,
        headers={**token, "Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 403, created.text
    assert "Practitioner.write" in created.json()["issue"][0]["diagnostics"]
    assert (await api.get("/Practitioner/x/_history", headers=token)).status_code == 403
