"""Validation messages in English and French (``lang="fr"``; anything else is English)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

_MESSAGES: dict[str, tuple[str, str]] = {
    "unknown-element": ("Unknown element '{name}'", "Élément inconnu « {name} »"),
    "not-array": ("'{name}' must be an array", "« {name} » doit être un tableau"),
    "not-single": (
        "'{name}' must be a single value, not an array",
        "« {name} » doit être une valeur unique, pas un tableau",
    ),
    "empty-array": ("'{name}' must not be an empty array", "« {name} » ne doit pas être vide"),
    "min": (
        "'{name}': minimum cardinality is {min}, found {count}",
        "« {name} » : cardinalité minimale {min}, trouvé {count}",
    ),
    "max": (
        "'{name}': maximum cardinality is {max}, found {count}",
        "« {name} » : cardinalité maximale {max}, trouvé {count}",
    ),
    "slice-min": (
        "'{name}': slice '{slice}' requires at least {min} item(s), found {count}",
        "« {name} » : la tranche « {slice} » exige au moins {min} élément(s), trouvé {count}",
    ),
    "slice-max": (
        "'{name}': slice '{slice}' allows at most {max} item(s), found {count}",
        "« {name} » : la tranche « {slice} » admet au plus {max} élément(s), trouvé {count}",
    ),
    "closed": (
        "This '{name}' matches none of the allowed slices ({slices}) and the slicing is closed",
        "Ce « {name} » ne correspond à aucune des tranches permises ({slices}) "
        "et le découpage est fermé",
    ),
    "order": (
        "'{name}': slice '{slice}' must come before slice '{previous}'",
        "« {name} » : la tranche « {slice} » doit précéder la tranche « {previous} »",
    ),
    "open-at-end": (
        "'{name}': items that match no slice must come after the sliced ones",
        "« {name} » : les éléments hors tranches doivent suivre ceux des tranches",
    ),
    "choice-many": (
        "Only one of {keys} may be present",
        "Une seule des clés {keys} peut être présente",
    ),
    "null": ("null is not allowed here", "null n'est pas permis ici"),
    "empty-object": (
        "Empty object: an element must have a value or children",
        "Objet vide : un élément doit avoir une valeur ou des enfants",
    ),
    "not-object": ("Expected a JSON object ({type})", "Objet JSON attendu ({type})"),
    "json-type": (
        "Expected a JSON {json} for a {type}, found {found}",
        "Un {json} JSON est attendu pour un {type}, trouvé {found}",
    ),
    "bad-format": ("Invalid {type}: {value}", "{type} invalide : {value}"),
    "max-length": (
        "Value longer than {max} characters ({length})",
        "Valeur de plus de {max} caractères ({length})",
    ),
    "fixed": (
        "Value must be exactly {expected}, found {found}",
        "La valeur doit être exactement {expected}, trouvé {found}",
    ),
    "pattern": (
        "Value must match the pattern {expected}, found {found}",
        "La valeur doit correspondre au motif {expected}, trouvé {found}",
    ),
    "code-system": (
        "System '{system}' is not in value set {vs} ({strength} binding; allowed: {systems})",
        "Le système « {system} » n'est pas dans le jeu de valeurs {vs} "
        "(liaison {strength} ; permis : {systems})",
    ),
    "code-code": (
        "Code '{code}' (system '{system}') is not in value set {vs} ({strength} binding)",
        "Le code « {code} » (système « {system} ») n'est pas dans le jeu de valeurs {vs} "
        "(liaison {strength})",
    ),
    "code-plain": (
        "Code '{code}' is not in value set {vs} ({strength} binding)",
        "Le code « {code} » n'est pas dans le jeu de valeurs {vs} (liaison {strength})",
    ),
    "code-none": (
        "None of the codes is in value set {vs} ({strength} binding)",
        "Aucun des codes n'est dans le jeu de valeurs {vs} (liaison {strength})",
    ),
    "code-missing": (
        "No code provided, and a code is required from value set {vs}",
        "Aucun code fourni, alors qu'un code du jeu de valeurs {vs} est exigé",
    ),
    "vs-unknown": (
        "Value set {vs} is not available: codes here are not checked ({strength} binding)",
        "Le jeu de valeurs {vs} n'est pas disponible : les codes ne sont pas vérifiés "
        "(liaison {strength})",
    ),
    "invariant": (
        "Constraint failed: {key}: {human}",
        "Contrainte non respectée : {key} : {human}",
    ),
    "invariant-unevaluable": (
        "Constraint {key} could not be evaluated and is not checked ({expression})",
        "La contrainte {key} n'a pas pu être évaluée et n'est pas vérifiée ({expression})",
    ),
    "ext-unknown": (
        "Unknown extension {url}: its definition is not loaded, its content is not checked",
        "Extension inconnue {url} : sa définition n'est pas chargée, son contenu n'est pas vérifié",
    ),
    "modifier-unknown": (
        "Unknown modifier extension {url}: it cannot be ignored",
        "Extension modificatrice inconnue {url} : elle ne peut pas être ignorée",
    ),
    "ext-context": (
        "Extension {url} is not allowed on {path} (contexts: {contexts})",
        "L'extension {url} n'est pas permise sur {path} (contextes : {contexts})",
    ),
    "ext-no-url": ("Extension without a url", "Extension sans url"),
    "ref-type": (
        "Reference to a {found} where {allowed} is expected",
        "Référence vers un(e) {found} alors que {allowed} est attendu",
    ),
    "ref-contained": (
        "This reference must point to a contained resource ('#id'), found '{ref}'",
        "Cette référence doit désigner une ressource contenue ('#id'), trouvé « {ref} »",
    ),
    "ref-bundled": (
        "This reference must point to a resource of the same Bundle, found '{ref}'",
        "Cette référence doit désigner une ressource du même Bundle, trouvé « {ref} »",
    ),
    "ref-not-contained": (
        "This reference may not point to a contained resource, found '{ref}'",
        "Cette référence ne peut pas désigner une ressource contenue, trouvé « {ref} »",
    ),
    "ref-type-mismatch": (
        "Reference.type '{type}' does not match the reference '{ref}'",
        "Reference.type « {type} » ne correspond pas à la référence « {ref} »",
    ),
    "profile-unknown": (
        "Profile {url} is not available: the resource is not checked against it",
        "Le profil {url} n'est pas disponible : la ressource n'est pas vérifiée par rapport à lui",
    ),
    "profile-type": (
        "Profile {url} constrains {expected}, not {found}",
        "Le profil {url} s'applique à {expected}, pas à {found}",
    ),
    "type-profile-unknown": (
        "Profile {url} of this element is not available: only the base type is checked",
        "Le profil {url} de cet élément n'est pas disponible : seul le type de base est vérifié",
    ),
    "no-resource-type": ("resourceType is missing", "resourceType est absent"),
    "unknown-resource-type": (
        "Unknown resource type '{type}'",
        "Type de ressource inconnu « {type} »",
    ),
    "resource-type": (
        "Expected a {expected} resource, found {found}",
        "Une ressource {expected} est attendue, trouvé {found}",
    ),
    "not-resource": ("A resource must be a JSON object", "Une ressource doit être un objet JSON"),
    "no-core": (
        "The FHIR R4 core package is not loaded: nothing can be validated",
        "Le paquet FHIR R4 core n'est pas chargé : rien ne peut être validé",
    ),
    "internal": ("Internal validator error: {error}", "Erreur interne du validateur : {error}"),
}


def text(message: str, lang: str, /, **args: Any) -> str:
    try:
        return _cached(message, lang, tuple(args.items()))
    except TypeError:  # an argument that cannot be hashed
        return _format(message, lang, args)


@lru_cache(maxsize=4096)
def _cached(message: str, lang: str, args: tuple[tuple[str, Any], ...]) -> str:
    return _format(message, lang, dict(args))


def _format(message: str, lang: str, args: dict[str, Any]) -> str:
    english, french = _MESSAGES[message]
    template = french if lang == "fr" else english
    return template.format(**args)


def show(value: Any, limit: int = 200) -> str:
    """A JSON value for a message, shortened."""
    try:
        out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        out = repr(value)
    return out if len(out) <= limit else out[: limit - 1] + "…"
