"""Sessions that act as a Supabase user, so the app meets the same Row Level Security as
PostgREST, and report its refusals as :mod:`crm_schema.errors`.

PostgREST runs each request in a transaction that starts with
``set_config('request.jwt.claims', <claims>, true)`` and ``set_config('role', <role>, true)``.
:func:`identify` makes a session do exactly that at the start of every transaction; the sync
sessions (:func:`user_session`, :func:`service_session`, :func:`session_from_jwt`) and their
async twins (:func:`async_user_session`, ...) all go through it. Both
settings are transaction-local: when the transaction ends they are gone, so a pooled
connection never carries one user's identity to the next.
"""

from __future__ import annotations

import json
import re
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, select, text
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.exc import StaleDataError

from crm_schema.db import normalize_url
from crm_schema.errors import AccessDenied, ConcurrentEdit, NotFound
from crm_schema.tokens import token_role, verify_access_token

if TYPE_CHECKING:  # sqlalchemy.ext.asyncio needs greenlet (extra ``async``) only when used
    from jwt import PyJWKSet
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

if TYPE_CHECKING:
    pass

IDENTITY = "crm_schema.identity"  # session.info key: (claims as JSON, database role)
APPLY_IDENTITY = text(
    "SELECT set_config('request.jwt.claims', :claims, true), set_config('role', :role, true)"
)
INSUFFICIENT_PRIVILEGE = "42501"  # RLS WITH CHECK failures and the guard triggers' refusals


def app_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A pooled engine for an application (``postgresql://`` URLs get the psycopg 3 driver)."""
    return create_engine(normalize_url(url), **kwargs)


def user_claims(
    user_id: uuid.UUID, *, email: str | None = None, role: str = "authenticated"
) -> dict[str, Any]:
    """JWT claims shaped like the ones Supabase Auth issues for a signed-in user."""
    claims: dict[str, Any] = {"sub": str(user_id), "role": role, "aud": role}
    if email is not None:
        claims["email"] = email
    return claims


SERVICE_CLAIMS: Mapping[str, Any] = {"role": "service_role"}


# --- identity: the part sync and async sessions share -------------------------------------

# Connections inside one of these sessions' transactions: only their errors are translated.
_IDENTIFIED: weakref.WeakSet[Connection] = weakref.WeakSet()


def _on_begin(session: Session, _: SessionTransaction, connection: Connection) -> None:
    claims, role = session.info[IDENTITY]
    connection.execute(APPLY_IDENTITY, {"claims": claims, "role": role})
    _IDENTIFIED.add(connection)


def identify(session: Session, claims: Mapping[str, Any], role: str) -> Session:
    """Make every transaction of ``session`` run as PostgREST would run a request with these
    JWT ``claims`` under database role ``role``. For an ``AsyncSession`` pass its
    ``sync_session``. Returns ``session``."""
    session.info[IDENTITY] = (json.dumps(dict(claims), default=str), role)
    if not event.contains(session, "after_begin", _on_begin):
        event.listen(session, "after_begin", _on_begin)
    bind = session.bind
    engine = bind.engine if isinstance(bind, Connection) else bind
    if isinstance(engine, Engine) and not event.contains(engine, "handle_error", _refusal):
        event.listen(engine, "handle_error", _refusal)
    return session


# --- errors: what RLS and the guards say, as crm_schema.errors ----------------------------

_WRITE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:\w+\.)?\"?(\w+)", re.I)
_STALE_TABLE = re.compile(r"on table '(?:\w+\.)?(\w+)'")


def _refusal(context: ExceptionContext) -> None:
    """Engine ``handle_error`` hook: InsufficientPrivilege inside an identified session
    becomes :class:`AccessDenied` naming the table written to (the flush adds the row)."""
    orig = context.original_exception
    if getattr(orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
        return
    if context.connection is None or context.connection not in _IDENTIFIED:
        return
    written = _WRITE.match(context.statement or "")
    message = str(orig).strip().splitlines()[0]
    raise AccessDenied(written.group(1) if written else None, None, message) from orig


class _Pending(NamedTuple):
    """A persistent object a flush is about to UPDATE or DELETE, as the ORM saw it."""

    table: Table
    identity: tuple[Any, ...]
    version: Any


def _pending_writes(session: Session) -> list[_Pending]:
    found = []
    changed = [obj for obj in session.dirty if session.is_modified(obj)]
    for obj in [*changed, *session.deleted]:
        state = inspect(obj)
        if state.identity is None:
            continue
        mapper = state.mapper
        version_col = mapper.version_id_col
        version = None
        if version_col is not None:
            prop = mapper.get_property_by_column(version_col)
            version = state.attrs[prop.key].loaded_value
        table = mapper.local_table
        if isinstance(table, Table):
            found.append(_Pending(table, tuple(state.identity), version))
    return found


def _row_id(identity: tuple[Any, ...]) -> Any:
    return identity[0] if len(identity) == 1 else identity


class CrmSession(Session):
    """A ``Session`` whose flush reports refusals and conflicts as :mod:`crm_schema.errors`.

    An UPDATE or DELETE that matched no row is looked up again with the session's identity,
    in a fresh transaction: still there at the version the ORM read means RLS refused the
    write (:class:`AccessDenied`); there at a newer version is a real conflict
    (:class:`ConcurrentEdit`); no longer visible is :class:`NotFound`.
    """

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        pending = _pending_writes(self) if IDENTITY in self.info else []
        try:
            super().flush(objects)
        except AccessDenied as exc:
            if exc.row_id is None:
                mine = [p for p in pending if p.table.name == exc.table]
                if len(mine) == 1:
                    exc.row_id = _row_id(mine[0].identity)
            raise
        except StaleDataError as exc:
            if isinstance(exc, ConcurrentEdit) or not pending:
                raise
            raise self._explain(exc, pending) from exc

    def _explain(self, exc: StaleDataError, pending: list[_Pending]) -> Exception:
        named = _STALE_TABLE.search(str(exc))
        table = named.group(1) if named else None
        candidates = [p for p in pending if table in (None, p.table.name)] or pending
        claims, role = self.info[IDENTITY]
        denied: AccessDenied | None = None
        with Session(bind=self.bind) as lookup:
            identify(lookup, json.loads(claims), role)
            for p in candidates:
                now = _current_version(lookup, p)
                name, row_id = p.table.name, _row_id(p.identity)
                if now is _GONE:
                    return NotFound(name, row_id, f"{name} {row_id} is not there for you")
                if now != p.version:
                    return ConcurrentEdit(
                        name,
                        row_id,
                        f"{name} {row_id} was changed by someone else "
                        f"(version {p.version} read, now {now}): reload it and try again",
                    )
                denied = denied or AccessDenied(
                    name, row_id, f"permission denied: you may not change {name} {row_id}"
                )
        return denied or exc


_GONE = object()


def _current_version(session: Session, pending: _Pending) -> Any:
    """The row's version as this identity sees it now (soft-deleted rows included when RLS
    shows them), or ``_GONE``."""
    pk = list(pending.table.primary_key.columns)
    version_col = pending.table.c.get("version")
    query = select(version_col if version_col is not None else pk[0]).where(
        *(col == value for col, value in zip(pk, pending.identity, strict=True))
    )
    row = session.execute(query).first()
    if row is None:
        return _GONE
    return row[0] if version_col is not None else pending.version


def _session_as(bind: Engine | Connection, claims: Mapping[str, Any], role: str) -> Session:
    session = CrmSession(bind=bind)
    identify(session, claims, role)
    return session


def user_session(
    bind: Engine | Connection, user_id: uuid.UUID, *, email: str | None = None
) -> Session:
    """A session whose every transaction runs as the signed-in user ``user_id``."""
    return _session_as(bind, user_claims(user_id, email=email), "authenticated")


def service_session(bind: Engine | Connection) -> Session:
    """A session running as ``service_role`` (bypasses RLS, as Supabase's service key does)."""
    return _session_as(bind, SERVICE_CLAIMS, "service_role")


def session_from_jwt(
    bind: Engine | Connection,
    token: str,
    *,
    secret: str | bytes | None = None,
    jwks: Mapping[str, Any] | PyJWKSet | None = None,
    audience: str | None = "authenticated",
) -> Session:
    """A session for the user a Supabase access token names, after verifying the token
    (:func:`crm_schema.tokens.verify_access_token`: raises :class:`InvalidToken`).

    Every claim reaches ``request.jwt.claims`` as PostgREST passes it (``auth.jwt()`` sees
    ``app_metadata``, ``aal``, ``session_id``, ...), and the role is the token's ``role``.
    """
    claims = verify_access_token(token, secret=secret, jwks=jwks, audience=audience)
    return _session_as(bind, claims, token_role(claims))


# --- async: the same sessions on an AsyncEngine (extra ``async``: greenlet) ---------------


def async_app_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """A pooled ``AsyncEngine`` on psycopg's async driver (``postgresql://`` URLs are fine)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(normalize_url(url), **kwargs)


def _async_session_as(engine: AsyncEngine, claims: Mapping[str, Any], role: str) -> AsyncSession:
    from sqlalchemy.ext.asyncio import AsyncSession

    session = AsyncSession(bind=engine, sync_session_class=CrmSession)
    identify(session.sync_session, claims, role)
    return session


def async_user_session(
    engine: AsyncEngine, user_id: uuid.UUID, *, email: str | None = None
) -> AsyncSession:
    """:func:`user_session` for asyncio: every transaction runs as the signed-in user."""
    return _async_session_as(engine, user_claims(user_id, email=email), "authenticated")


def async_service_session(engine: AsyncEngine) -> AsyncSession:
    """:func:`service_session` for asyncio: runs as ``service_role``."""
    return _async_session_as(engine, SERVICE_CLAIMS, "service_role")


def async_session_from_jwt(
    engine: AsyncEngine,
    token: str,
    *,
    secret: str | bytes | None = None,
    jwks: Mapping[str, Any] | PyJWKSet | None = None,
    audience: str | None = "authenticated",
) -> AsyncSession:
    """:func:`session_from_jwt` for asyncio (verifying a token does no I/O)."""
    claims = verify_access_token(token, secret=secret, jwks=jwks, audience=audience)
    return _async_session_as(engine, claims, token_role(claims))
