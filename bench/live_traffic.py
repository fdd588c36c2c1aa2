"""The CRM's everyday traffic, run by client threads while a migration or rollback runs.

Each client holds one connection and sends one request after another, each request one
transaction shaped as PostgREST sends it (``role`` and ``request.jwt.claims`` set for the
transaction). Half the clients are signed-in agents working through Row Level Security, the
other half service_role. The work uses only what the baseline already had, and only what an
agent may do both at the baseline and at head: read its dispensaries, place an order with
lines, log a communication, move one of its own tasks along. So any error a client sees, and
any request that finds nothing where there must be something, is the migration's fault.

Used by the live-migration test (which asserts no client saw an error, never a timing) and
by ``make bench`` (which reports the latencies).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from crm_schema.db import normalize_url

# Agents with dispensaries, each with a task it created, is assigned and that belongs to one
# of its dispensaries: one an agent may update at the baseline and at head alike.
SUBJECTS = """
SELECT p.id, array_agg(DISTINCT d.id) AS dispensaries,
       (SELECT t.id FROM public.tasks AS t
         WHERE t.created_by = p.id AND t.assigned_to = p.id
           AND t.dispensary_id = ANY (array_agg(d.id))
         ORDER BY t.id LIMIT 1) AS task
  FROM public.profiles AS p JOIN public.dispensary_profiles AS d ON d.assigned_agent_id = p.id
 WHERE p.role = 'agent'
 GROUP BY p.id
 ORDER BY p.id
 LIMIT 50
"""
PRODUCTS = "SELECT id, unit_price FROM public.products ORDER BY id LIMIT 50"

READ_DISPENSARIES = (
    "SELECT id, name FROM public.dispensary_profiles WHERE assigned_agent_id = %(me)s "
    "ORDER BY name LIMIT 20"
)
INSERT_ORDER = (
    "INSERT INTO public.orders (dispensary_id, agent_id, status, total_amount, notes) "
    "VALUES (%(dispensary)s, %(me)s, 'submitted', %(total)s, 'live traffic') RETURNING id"
)
INSERT_ITEM = (
    "INSERT INTO public.order_items (order_id, product_id, quantity, unit_price) "
    "VALUES (%(order)s, %(product)s, %(quantity)s, %(price)s)"
)
INSERT_COMMUNICATION = (
    "INSERT INTO public.communications (dispensary_id, agent_id, type, subject, body) "
    "VALUES (%(dispensary)s, %(me)s, 'call', 'Weekly check-in', 'Menu and prices discussed')"
)
UPDATE_TASK = (
    "UPDATE public.tasks SET status = CASE WHEN status = 'pending' THEN 'in_progress' "
    "ELSE 'pending' END::public.task_status WHERE id = %(task)s"
)


KINDS = ("read dispensaries", "place order", "log communication", "update task")


@dataclass
class Subject:
    user_id: str
    dispensaries: list[str]
    task: str


@dataclass(frozen=True)
class Request:
    began: float
    seconds: float
    kind: str
    error: str | None


class RefusedRequestError(Exception):
    """A request that ran but found nothing where the data says there must be something
    (Row Level Security hid it): as much a failure as an error."""


@dataclass
class Traffic:
    """``clients`` threads sending requests to ``url`` until stopped (use as a context
    manager). ``marks`` name moments (e.g. the start and end of a migration) for
    :meth:`summary`."""

    url: str | URL
    clients: int = 8
    seed: int = 7
    requests: list[Request] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._conninfo = (
            normalize_url(self.url).set(drivername="postgresql").render_as_string(False)
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.subjects, self.products = self._load_subjects()

    def _load_subjects(self) -> tuple[list[Subject], list[tuple[str, float]]]:
        with psycopg.connect(self._conninfo) as conn:
            subjects = [
                Subject(str(row[0]), [str(d) for d in row[1]], str(row[2]))
                for row in conn.execute(SUBJECTS)
                if row[2] is not None
            ]
            products = [(str(r[0]), float(r[1])) for r in conn.execute(PRODUCTS)]
        if not subjects or not products:
            raise ValueError("the database needs agents with dispensaries and tasks: seed-data")
        return subjects, products

    def __enter__(self) -> Traffic:
        for index in range(self.clients):
            as_agent = index % 2 == 0
            thread = threading.Thread(target=self._client, args=(index, as_agent), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    # --- one client -------------------------------------------------------------------

    def _client(self, index: int, as_agent: bool) -> None:
        rnd = random.Random(self.seed * 1000 + index)  # noqa: S311 (test data, not secrets)
        subject = self.subjects[index % len(self.subjects)]
        with psycopg.connect(self._conninfo, application_name=f"crm-traffic-{index}") as conn:
            turn = 0
            while not self._stop.is_set():
                kind = KINDS[turn % len(KINDS)]
                turn += 1
                began = time.perf_counter()
                error = self.request(conn, kind, subject, as_agent, rnd)
                self._record(Request(began, time.perf_counter() - began, kind, error))

    def request(
        self,
        conn: psycopg.Connection[Any],
        kind: str,
        subject: Subject,
        as_agent: bool,
        rnd: random.Random,
        keep: bool = True,
    ) -> str | None:
        """One request in its own transaction, as PostgREST runs it; the error it met, if any.
        With ``keep`` false its transaction is rolled back instead of committed."""
        role = "authenticated" if as_agent else "service_role"
        claims = json.dumps(
            {"sub": subject.user_id, "role": role, "aud": role} if as_agent else {"role": role}
        )
        try:
            with conn.transaction(force_rollback=not keep):
                conn.execute(
                    "SELECT set_config('role', %s, true), "
                    "set_config('request.jwt.claims', %s, true)",
                    (role, claims),
                )
                self._work(conn, kind, subject, rnd)
        except (psycopg.Error, RefusedRequestError) as exc:
            return _error_kind(exc)
        return None

    def every_request_once(self, keep: bool = True) -> dict[str, str]:
        """Each kind of request once as an agent and once as service_role, one after the
        other: what failed, by request ('agent: place order' -> its error). With ``keep``
        false nothing they write is committed."""
        rnd = random.Random(self.seed)  # noqa: S311 (test data, not secrets)
        failed: dict[str, str] = {}
        with psycopg.connect(self._conninfo) as conn:
            for as_agent in (True, False):
                for kind in KINDS:
                    error = self.request(conn, kind, self.subjects[0], as_agent, rnd, keep)
                    if error is not None:
                        failed[f"{'agent' if as_agent else 'service_role'}: {kind}"] = error
        return failed

    def _work(
        self, conn: psycopg.Connection[Any], kind: str, me: Subject, rnd: random.Random
    ) -> None:
        dispensary = rnd.choice(me.dispensaries)
        if kind == "read dispensaries":
            rows = conn.execute(READ_DISPENSARIES, {"me": me.user_id}).fetchall()
            if not rows:
                raise RefusedRequestError("saw none of its dispensaries")
        elif kind == "place order":
            lines = rnd.sample(self.products, k=rnd.randint(1, 3))
            total = round(sum(price * 2 for _, price in lines), 2)
            order = conn.execute(
                INSERT_ORDER, {"dispensary": dispensary, "me": me.user_id, "total": total}
            ).fetchone()
            if order is None:
                raise RefusedRequestError("order insert returned nothing")
            for product, price in lines:
                conn.execute(
                    INSERT_ITEM,
                    {"order": order[0], "product": product, "quantity": 2, "price": price},
                )
        elif kind == "log communication":
            conn.execute(INSERT_COMMUNICATION, {"dispensary": dispensary, "me": me.user_id})
        else:
            if conn.execute(UPDATE_TASK, {"task": me.task}).rowcount != 1:
                raise RefusedRequestError("its own task was not updated")

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    # --- what the clients saw ---------------------------------------------------------

    def errors(self) -> Counter[str]:
        return Counter(r.error for r in self.requests if r.error is not None)

    def between(self, start: str | None, end: str | None) -> list[Request]:
        low = self.marks[start] if start else float("-inf")
        high = self.marks[end] if end else float("inf")
        return [r for r in self.requests if low <= r.began < high]

    def summary(self, start: str | None, end: str | None) -> dict[str, Any]:
        """Latency figures (ms) and errors by kind of the requests begun in a window."""
        chosen = self.between(start, end)
        times = sorted(r.seconds * 1000 for r in chosen)
        if not times:
            return {"requests": 0}
        return {
            "requests": len(times),
            "p50_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
            "max_ms": times[-1],
            "errors": dict(Counter(r.error for r in chosen if r.error)),
        }


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, RefusedRequestError):
        return f"refused: {exc}"
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} ({sqlstate})" if sqlstate else type(exc).__name__
