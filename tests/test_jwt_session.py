"""Sessions from a Supabase access token: verified with the project's HS256 secret or with a
JWKS (ES256 / RS256, keys made here: no network), every claim handed to the database as
PostgREST hands it, and each bad token refused with one InvalidToken."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from crm_schema.errors import InvalidToken
from crm_schema.models import DispensaryProfile
from crm_schema.session import (
    app_engine,
    async_app_engine,
    async_session_from_jwt,
    session_from_jwt,
)
from tests import sample_data as s

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(algorithm: Any, private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    jwk: dict[str, Any] = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


JWKS = {
    "keys": [
        _jwk(ECAlgorithm, EC_KEY, "ec-1", "ES256"),
        _jwk(RSAAlgorithm, RSA_KEY, "rsa-1", "RS256"),
    ]
}


def claims_for(user: uuid.UUID, **extra: Any) -> dict[str, Any]:
    """What Supabase Auth puts in an access token for a signed-in user."""
    now = int(time.time())
    return {
        "iss": "https://project.supabase.co/auth/v1",
        "sub": str(user),
        "aud": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "email": "agent.a@cakeoklahoma.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"full_name": "Agent A"},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
        **extra,
    }


def hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def es256(claims: dict[str, Any], key: Any = EC_KEY, kid: str = "ec-1") -> str:
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def app(db_url: URL) -> Iterator[Engine]:
    engine = app_engine(db_url)
    with engine.begin() as connection:
        s.load(connection)
    yield engine
    engine.dispose()


SEEN = text(
    "SELECT auth.uid(), current_user, current_setting('request.jwt.claims')::jsonb, "
    "auth.jwt() -> 'app_metadata' ->> 'provider', auth.jwt() ->> 'aal'"
)


def test_hs256_token_gives_the_users_session_with_every_claim(app: Engine) -> None:
    claims = claims_for(s.AGENT_A)
    with session_from_jwt(app, hs256(claims), secret=SECRET) as session:
        uid, role, passed, provider, aal = session.execute(SEEN).one()
        mine = session.scalars(select(DispensaryProfile.id)).all()
    assert (uid, role) == (s.AGENT_A, "authenticated")
    assert passed == claims  # all of them, unchanged, as PostgREST passes them
    assert (provider, aal) == ("email", "aal1")
    assert mine == [s.DISPENSARY_A]  # and RLS applies to that user


def test_es256_and_rs256_tokens_verify_against_a_jwks(app: Engine) -> None:
    claims = claims_for(s.AGENT_B)
    rs = jwt.encode(claims, RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    for token, keys in ((es256(claims), JWKS), (rs, jwt.PyJWKSet.from_dict(JWKS))):
        with session_from_jwt(app, token, jwks=keys) as session:
            uid, role, passed, _, _ = session.execute(SEEN).one()
        assert (uid, role, passed) == (s.AGENT_B, "authenticated", claims)


def test_async_twin(app: Engine, db_url: URL) -> None:
    async def scenario() -> tuple[Any, ...]:
        engine = async_app_engine(db_url)
        try:
            token = es256(claims_for(s.AGENT_A))
            async with async_session_from_jwt(engine, token, jwks=JWKS) as session:
                return tuple((await session.execute(SEEN)).one())
        finally:
            await engine.dispose()

    uid, role, passed, _, _ = asyncio.run(scenario())
    assert (uid, role, passed["sub"]) == (s.AGENT_A, "authenticated", str(s.AGENT_A))


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
GOOD = claims_for(s.AGENT_A)
REFUSED = {
    "expired": (hs256({**GOOD, "exp": int(time.time()) - 60}), {"secret": SECRET}, "expired"),
    "wrong audience": (hs256({**GOOD, "aud": "someone-else"}), {"secret": SECRET}, "Audience"),
    "no expiry": (hs256({k: v for k, v in GOOD.items() if k != "exp"}), {"secret": SECRET}, "exp"),
    "wrong secret": (hs256(GOOD, secret="x" * 40), {"secret": SECRET}, "Signature"),
    "wrong key": (es256(GOOD, key=OTHER_EC_KEY), {"jwks": JWKS}, "Signature"),
    "unknown kid": (es256(GOOD, kid="gone"), {"jwks": JWKS}, "no key 'gone'"),
    "alg none": (_unsigned(GOOD), {"secret": SECRET, "jwks": JWKS}, "'none' is not accepted"),
    # Algorithm confusion: an HS256 token where only public keys are configured.
    "HS256 with only a JWKS": (hs256(GOOD), {"jwks": JWKS}, "'HS256' is not accepted with a JWKS"),
    "EC token, RSA key": (es256(GOOD, kid="rsa-1"), {"jwks": JWKS}, "is for RS256"),
    "service_role": (hs256({**GOOD, "role": "service_role"}), {"secret": SECRET}, "service_role"),
    "garbage": ("not.a.token", {"secret": SECRET}, "invalid access token"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_tokens_are_refused_with_one_clear_error(case: str) -> None:
    token, keys, says = REFUSED[case]
    nowhere = app_engine("postgresql://nobody@127.0.0.1:1/none")  # refused before any I/O
    with pytest.raises(InvalidToken, match=says) as refused:
        session_from_jwt(nowhere, token, **keys)
    assert not isinstance(refused.value, SQLAlchemyError)
    assert str(refused.value).startswith("invalid access token: ")
    assert "\n" not in str(refused.value)


def test_an_anon_token_gets_nothing(app: Engine) -> None:
    anon = hs256({"role": "anon", "exp": int(time.time()) + 60, "iss": "supabase"})
    with session_from_jwt(app, anon, secret=SECRET, audience=None) as session:
        assert session.execute(text("SELECT current_user")).scalar() == "anon"
        with pytest.raises(Exception, match="permission denied"):
            session.scalars(select(DispensaryProfile.id)).all()
