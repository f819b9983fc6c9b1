"""What every JSON endpoint shares: the error type, the checked body and query (codeservice/contract.py).

Errors are answered as ``{"error": reason, "message": text}`` by one handler the app registers.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, g, request

#: The status of a refusal of a request that the document allows: what it names does not exist, a check character
#: is wrong, a code does not verify (RFC 9110, 15.5.21). 400 is only for a request the document itself refuses.
UNPROCESSABLE = 422


class BadRequest(Exception):
    """A refusal with a stable ``reason`` and an HTTP ``status`` (400 unless said)."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_object() -> dict[str, Any]:
    """The body as a JSON object; NaN and Infinity are not JSON and are refused.

    For an /api/v1 operation this is the body as the document's contract checked it (codeservice/contract.py):
    ``{}`` when the operation's body may be left out and was."""
    if g.get("contract_checked") and "contract_body" in g:
        return g.contract_body if g.contract_body is not None else {}
    if not request.is_json:
        raise BadRequest("unsupported_media_type", "send a JSON body with Content-Type: application/json", 415)
    try:
        body = json.loads(request.get_data(cache=True), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid_json", "the body is not valid JSON") from None
    except RecursionError:  # nesting deeper than the parser's stack: no body of ours is like that
        raise BadRequest("invalid_json", "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("invalid_body", "the body must be a JSON object")
    return body


def no_store(response: Response) -> Response:
    """Marks an answer that carries a resident's or an operator's data as never to be cached."""
    response.headers["Cache-Control"] = "no-store"
    return response


def query_arg(name: str) -> Any:
    """The query parameter *name* of an /api/v1 operation as the document types it (a whole number for an
    ``integer``), its documented default when it was left out; checked by codeservice/contract.py."""
    return g.contract_query.get(name)
