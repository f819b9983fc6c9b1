"""What every JSON endpoint shares: the error type, body parsing, and the signed-in resident.

Errors are answered as ``{"error": reason, "message": text}`` by one handler the app registers.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from flask import Response, g, request


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


def no_nul(value: Any) -> None:
    """NUL characters cannot be stored in PostgreSQL text: refuse them anywhere in the body."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest("invalid_body", "text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul(key)
            no_nul(item)
    elif isinstance(value, list):
        for item in value:
            no_nul(item)


def json_body(
    required: Collection[str], optional: Collection[str] = (), *, may_be_empty: bool = False
) -> dict[str, Any]:
    """A JSON object with exactly these members (the optional ones may be left out)."""
    if may_be_empty and not request.get_data(cache=True):
        return {}
    data = json_object()
    unknown = set(data) - set(required) - set(optional)
    if unknown:
        raise BadRequest("invalid_body", f"unknown members: {', '.join(sorted(unknown))}")
    missing = set(required) - set(data)
    if missing:
        raise BadRequest("invalid_body", f"missing members: {', '.join(sorted(missing))}")
    no_nul(data)
    return data


def text(data: dict[str, Any], name: str, max_length: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise BadRequest("invalid_body", f"'{name}' must be a string of 1 to {max_length} characters")
    return value


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """The query parameter *name* as a whole number from *low* to *high*; 400 ``invalid_query`` otherwise."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or not low <= int(raw) <= high:
        raise BadRequest("invalid_query", f"'{name}' must be a whole number from {low} to {high}")
    return int(raw)
