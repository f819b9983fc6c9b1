"""The allowance a minute of a verifier's key: one counter a client in the state store, a fixed one-minute
window from the first call counted (as clerks' and devices' calls are counted, consent/service.py). Beyond it
the call is refused with 429 and ``Retry-After``, and the attempt is in the access log."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from flask import request
from sqlalchemy.orm import Session

from codeservice.accesslog import service as accesslog
from codeservice.clients.models import ApiClient
from codeservice.jsonapi import BadRequest
from codeservice.services import current_services
from codeservice.state import StateError, StateStore

WINDOW_SECONDS = 60


class Wiring(Protocol):
    """What counting needs of the service's parts; ``codeservice.services.Services`` has it."""

    @property
    def state(self) -> StateStore: ...

    def transaction(self) -> AbstractContextManager[Session]: ...


class RateLimited(Exception):
    """More calls this minute than the client's ``rate_per_minute``; ``retry_after`` in seconds."""

    def __init__(self, client: ApiClient, retry_after: int = WINDOW_SECONDS) -> None:
        super().__init__(f"more than {client.rate_per_minute} requests a minute from this {client.role}; the "
                         f"attempt was logged; try again in {retry_after} s")
        self.retry_after = retry_after


def count_call(wiring: Wiring, client: ApiClient, *, method: str, path: str) -> None:
    """Count one call of *client*. Raises ``RateLimited`` beyond its allowance (once the attempt is logged) and
    ``StateError`` when the state store cannot count (the caller refuses: a rate it cannot count is not kept)."""
    used = wiring.state.count(f"rate:{{{client.id}}}", WINDOW_SECONDS)  # tag: the client
    if used <= client.rate_per_minute:
        return
    with wiring.transaction() as db:
        shown = "".join(c if c.isprintable() else "?" for c in path[:200])  # PostgreSQL refuses NUL
        accesslog.append(db, actor=f"{client.role}:{client.id}", actor_label=client.name, office=client.office_id,
                         action="rate_limited", what=[{"method": method, "path": shown}], outcome="refused")
    # The window is fixed from its first call: it has ended a minute from now at the latest.
    raise RateLimited(client)


def limit_verifier(client: ApiClient) -> None:
    """In a view: count the verifier's call; 429 ``rate_limited`` with Retry-After beyond its allowance (logged),
    503 ``state_unavailable`` when the state store cannot count (fail closed)."""
    try:
        count_call(current_services(), client, method=request.method, path=request.full_path.rstrip("?"))
    except RateLimited as exc:
        raise BadRequest("rate_limited", str(exc), 429, {"Retry-After": str(exc.retry_after)}) from None
    except StateError as exc:
        raise BadRequest("state_unavailable", str(exc), 503) from None
