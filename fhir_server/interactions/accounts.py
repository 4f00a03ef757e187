"""Which role a signed-in professional gets: their regulator account, else the configuration.

The SAS platform manages regulator accounts on our server (INT_R02: ``POST Practitioner``,
``PUT Practitioner?identifier=``, deactivation by ``active=false``): a professional whose
national id (IdNat_PS, Pro Santé Connect's ``SubjectNameID``) is an identifier of an active
``FrPractitionerRegul`` Practitioner is a regulator, and stops being one the moment the
platform deactivates the account. ``FHIR_PERSON_ROLES`` names the few others (administrators,
platform operators) explicitly. Anyone else is signed in by PSC but has no business here.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from fhir_server.core.caller import SYSTEM
from fhir_server.core.roles import Role
from fhir_server.interactions.context import Context

NATIONAL_ID_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # IdNat_PS (ANS)
REGULATOR_PROFILE = (
    "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/FrPractitionerRegul"
)


async def person_role(
    ctx: Context, national_id: str, configured: Mapping[str, Role]
) -> Role | None:
    """The role of the professional ``national_id``; None: they may not use this server."""
    if national_id in configured:
        return configured[national_id]
    if await has_regulator_account(ctx, national_id):
        return "regulator"
    return None


async def has_regulator_account(ctx: Context, national_id: str) -> bool:
    """An active regulator account holds this national id (read as the server itself: who
    holds an account is not for the caller's visibility to decide)."""
    pairs = [("identifier", f"{NATIONAL_ID_SYSTEM}|{national_id}"), ("_count", "20")]
    async with ctx.store.reading(SYSTEM) as session:
        page = await ctx.search.execute(session, "Practitioner", pairs)
    for stored in page.matches:
        resource = orjson.loads(stored.content)
        profiles = resource.get("meta", {}).get("profile", [])
        if REGULATOR_PROFILE in profiles and resource.get("active", True) is True:
            return True
    return False
