"""What every JSON endpoint shares: the error type, the checked body and query (codeservice/contract.py).

Errors are answered as ``{"error": reason, "message": text}`` by one handler the app registers.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, request

#: The status of a refusal of a request that the document allows: what it names does not exist, a check character
#: is wrong, a code does not verify (RFC 9110, 15.5.21). 400 is only for a request the document itself refuses.
UNPROCESSABLE = 422


class BadRequest(Exception):
    """A refusal with a stable ``reason`` and an HTTP ``status`` (400 unless said)."""

    def __init__(self, reason: str, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.headers = dict(headers or {})  # e.g. Retry-After of a 429, WWW-Authenticate of a 401


def json_object() -> dict[str, Any]:
    """The body of the current /api/v1 request as codeservice/contract.py checked it against the document (``{}``
    when the operation's body may be left out and was). The contract parses it, once: a view that reads a body
    its request was not checked for is a mistake, not a client's."""
    if not g.get("contract_checked") or "contract_body" not in g:
        raise RuntimeError(f"{request.method} {request.path}: the body was not checked against the document")
    return g.contract_body if g.contract_body is not None else {}


def no_store(response: Response) -> Response:
    """Marks an answer that carries a resident's or an operator's data as never to be cached."""
    response.headers["Cache-Control"] = "no-store"
    return response


def query_arg(name: str) -> Any:
    """The query parameter *name* of an /api/v1 operation as the document types it (a whole number for an
    ``integer``), its documented default when it was left out; checked by codeservice/contract.py."""
    return g.contract_query.get(name)
