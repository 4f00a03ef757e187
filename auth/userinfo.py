"""The issuer's userinfo for an access token: JSON, or a JWT signed by the issuer.

PSC access tokens name a technical ``sub``, not the professional: the national id
(``SubjectNameID``), names and professions come from userinfo. Both the web login
(``oidc.py``) and the API's Bearer path read it here. Failures raise ``error`` (the login
says ``LoginFailed``, the API ``TokenRejected``); an issuer that cannot be reached is
``IdpUnavailable``.
"""

from __future__ import annotations

from typing import Any

from auth.discovery import get_response, parse_json_object
from auth.errors import AuthError, IdpUnavailable, TokenRejected
from auth.tokens import TokenVerifier

MAX_ANSWER_BYTES = 64 * 1024


async def fetch_userinfo(
    verifier: TokenVerifier,
    issuer: str,
    access_token: str,
    *,
    client_id: str | None = None,
    error: type[AuthError] = TokenRejected,
) -> dict[str, Any]:
    """Userinfo of ``access_token`` from ``issuer`` (one of ``verifier``'s). A signed answer
    meant for a named audience must name ``client_id`` when one is given."""
    discovery = verifier.discoveries.get(issuer)
    if discovery is None:
        raise error("the token's issuer is not configured here")
    endpoint = await discovery.endpoint("userinfo_endpoint")
    status, ctype, body = await get_response(
        verifier.http,
        "GET",
        endpoint,
        max_bytes=MAX_ANSWER_BYTES,
        headers={
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json, application/jwt",
        },
    )
    if status >= 500:
        raise IdpUnavailable(f"the userinfo endpoint answered HTTP {status}")
    if status != 200:
        raise error(f"the identity provider refused the userinfo request (HTTP {status})")
    if ctype == "application/jwt":
        try:
            _, info = await verifier.verify_signed(body.decode("ascii").strip())
        except (TokenRejected, UnicodeDecodeError) as exc:
            reason = exc.reason if isinstance(exc, AuthError) else "not ASCII"
            raise error(f"the signed userinfo was refused: {reason}") from exc
        aud = info.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if aud is not None and client_id is not None and client_id not in audiences:
            raise error("the signed userinfo is meant for another client (aud)")
        return info
    try:
        return parse_json_object(body, "userinfo")
    except IdpUnavailable as exc:
        raise error(exc.reason) from exc
