"""The dev IdP's HTML: the login page listing the fixture professionals, and error pages.

Server-side HTML, no JavaScript: the login page is a form that posts the authorization
request back (as hidden fields) with the chosen professional. Jinja2 autoescapes every
value, so request parameters cannot inject markup; the pages may not be framed.
"""

from __future__ import annotations

from collections.abc import Mapping

from jinja2 import DictLoader, Environment, select_autoescape
from starlette.responses import HTMLResponse

from auth.dev_idp.fixtures import PROFESSIONALS

_LOGIN = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<title>Connexion — Pro Santé Connect (développement)</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}
button{display:block;width:100%;margin:.4em 0;padding:.6em;text-align:left}</style>
</head><body>
<h1>Pro Santé Connect — fournisseur d'identité de développement</h1>
<p>Client <strong>{{ client_id }}</strong> demande une connexion. Choisissez un professionnel
fictif (aucune carte CPS ni e-CPS : ce serveur ne sert qu'au développement).</p>
<form method="post" action="{{ action }}">
{% for name, value in params %}<input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}
{% for pro in professionals %}<button type="submit" name="login" value="{{ pro.login }}">
{{ pro.given_name }} {{ pro.family_name }} — {{ pro.title }}
({{ pro.id_type }} {{ pro.number }}, SubjectNameID {{ pro.national_id }})</button>
{% endfor %}
<button type="submit" name="login" value="">Annuler</button>
</form></body></html>
"""

_MESSAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1><p>{{ message }}</p></body></html>
"""

_env = Environment(
    loader=DictLoader({"login.html": _LOGIN, "message.html": _MESSAGE}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)

# no script, no framing (clickjacking), nothing cached (the page carries a request's state)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def login_page(action: str, params: Mapping[str, str]) -> HTMLResponse:
    """The list of fixture professionals, each a button that completes the request."""
    html = _env.get_template("login.html").render(
        action=action,
        client_id=params.get("client_id", ""),
        params=[(k, v) for k, v in params.items() if k != "login"],
        professionals=PROFESSIONALS,
    )
    return HTMLResponse(html, headers=HEADERS)


def message_page(title: str, message: str, status: int = 200) -> HTMLResponse:
    html = _env.get_template("message.html").render(title=title, message=message)
    return HTMLResponse(html, status_code=status, headers=HEADERS)
