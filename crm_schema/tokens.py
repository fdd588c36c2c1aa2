"""Verifying a Supabase access token, so a session can run with exactly its claims.

Supabase signs access tokens either with the project's JWT secret (HS256, the legacy way) or
with asymmetric signing keys (ES256 or RS256) whose public halves it publishes as a JWKS at
``https://<project>.supabase.co/auth/v1/.well-known/jwks.json``. Fetching and caching that
JWKS is the app's business (``jwt.PyJWKClient`` does it); this module only verifies.

Needs the extra ``jwt`` (PyJWT with its crypto backend).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crm_schema.errors import InvalidToken

if TYPE_CHECKING:
    from jwt import PyJWK, PyJWKSet

ASYMMETRIC = ("ES256", "RS256")
API_ROLES = ("authenticated", "anon")
"""The roles a token may carry here. PostgREST would switch to whatever role the token names;
a ``service_role`` token (the service key) is refused on this path on purpose: back-office
code asks for :func:`crm_schema.session.service_session` explicitly, so a leaked service key
sent as a bearer token never becomes a way around RLS through the app."""


def _pyjwt() -> Any:
    try:
        import jwt
    except ImportError as exc:  # the extra is missing
        raise ImportError(
            "verifying Supabase tokens needs PyJWT: pip install 'crm-schema[jwt]'"
        ) from exc
    return jwt


def _signing_key(jwks: Mapping[str, Any] | PyJWKSet, kid: Any, alg: str) -> PyJWK:
    jwt = _pyjwt()
    keys: PyJWKSet = jwks if isinstance(jwks, jwt.PyJWKSet) else jwt.PyJWKSet.from_dict(jwks)
    if kid is None and len(keys.keys) == 1:
        key: PyJWK = keys.keys[0]
    else:
        matching = [k for k in keys.keys if k.key_id == kid]
        if not matching:
            raise InvalidToken(f"invalid access token: no key {kid!r} in the JWKS")
        key = matching[0]
    if key.algorithm_name != alg:  # an RSA key must not verify an EC-signed token, or back
        raise InvalidToken(
            f"invalid access token: key {kid!r} is for {key.algorithm_name}, token says {alg}"
        )
    return key


def verify_access_token(
    token: str,
    *,
    secret: str | bytes | None = None,
    jwks: Mapping[str, Any] | PyJWKSet | None = None,
    audience: str | None = "authenticated",
) -> dict[str, Any]:
    """The verified claims of a Supabase access token, or :class:`InvalidToken`.

    HS256 tokens need ``secret``; ES256 / RS256 tokens need ``jwks`` (a JWKS as a dict, or a
    ``jwt.PyJWKSet``). Anything else, ``alg: none`` included, is refused, and so is an HS256
    token when only a JWKS is given (the algorithm-confusion attack). ``exp`` is required and
    checked, ``aud`` must equal ``audience`` (``None``: not checked), and the ``role`` claim
    must be one of :data:`API_ROLES` (a missing role means ``anon``, as in PostgREST).
    """
    if secret is None and jwks is None:
        raise ValueError("pass the project's JWT secret (secret=) or its JWKS (jwks=)")
    jwt = _pyjwt()
    try:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256" and secret is not None:
            key: Any = secret
        elif alg in ASYMMETRIC and jwks is not None:
            key = _signing_key(jwks, header.get("kid"), alg)
        else:
            given = "the JWT secret" if jwks is None else "a JWKS" if secret is None else "both"
            raise InvalidToken(
                f"invalid access token: signing algorithm {alg!r} is not accepted with {given}"
            )
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            options={"require": ["exp"], "verify_aud": audience is not None},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid access token: {exc}") from exc
    role = claims.get("role", "anon")
    if role not in API_ROLES:
        raise InvalidToken(
            f"invalid access token: role {role!r} is not accepted for a user session "
            f"(only {', '.join(API_ROLES)}); use service_session() for back-office work"
        )
    return claims


def token_role(claims: Mapping[str, Any]) -> str:
    """The database role PostgREST would run these (verified) claims as."""
    return str(claims.get("role", "anon"))
