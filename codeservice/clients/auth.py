"""API-key authentication of machine clients (administrators, authorised verifiers)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, jsonify, request

from codeservice.clients.service import client_by_key
from codeservice.contract import check_request
from codeservice.services import current_services

F = TypeVar("F", bound=Callable[..., Any])


def require_client(*roles: str, check: bool = True) -> Callable[[F], F]:
    """The request must carry ``Authorization: Bearer <key>`` of an active client with one of *roles*.

    401 without a valid key, 403 with a key of another role; the client is in ``g.client``. Then (unless
    ``check=False``, whose caller does it itself) the request is checked against the document (contract.py).
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                return _deny(401, "unauthorised", "send Authorization: Bearer <API key>")
            with current_services().db.session() as session:
                client = client_by_key(session, key.strip())
                if client is None:
                    return _deny(401, "unauthorised", "unknown or disabled API key")
                if client.role not in roles:
                    return _deny(403, "forbidden", f"this endpoint needs {_with_article(roles)} key")
                session.expunge(client)
            g.client = client
            if check:
                check_request()
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def _with_article(roles: tuple[str, ...]) -> str:
    """'an auditor', 'a clerk or device': the article goes with the first role named."""
    named = " or ".join(roles)
    return ("an " if named[:1] in "aeiou" else "a ") + named


def _deny(status: int, error: str, message: str) -> Any:
    response = jsonify(error=error, message=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="citycode"'
    return response
