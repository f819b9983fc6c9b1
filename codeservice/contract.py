"""One contract: codeservice/openapi.json is the one source of the API's request and response shapes.

At app creation :class:`Contract` compiles, once, a validator for each documented operation (method and path
template): its JSON request body, its query parameters and its path parameters, JSON Schema 2020-12 (the
OpenAPI 3.1 dialect) with format checking, every ``$ref`` resolved within the document. Every /api/v1
request is then checked against it before its view runs:

* after the credential the operation's ``security`` names, never before: the view's ``require_client`` (for
  clerks and kiosks, after their rate limit too) or ``signed_in_resident`` calls :func:`check_request`; an
  operation without ``security`` is checked by the app's ``before_request`` hook;
* a refusal is 400 ``{error, message}`` naming the offending member (``/fields/0/name: ...``), with the code of
  the nearest ``x-error-code`` of the schemas that refused it, else ``invalid_body`` for the body,
  ``invalid_query`` for a query parameter and 404 ``not_found`` for a path parameter (a path that names
  nothing); a body that is not JSON is 415 ``unsupported_media_type`` or 400 ``invalid_json`` as before;
* the views read the checked body with :func:`codeservice.jsonapi.json_object` and keep only the checks the
  document cannot state (a reference to something that does not exist, a check character, the state found),
  which answer 404, 409 or 422 and never 400.

Text anywhere in a body must not hold a NUL character (PostgreSQL cannot store it): the document says so once,
in its description, and :func:`_no_nul` refuses it for every body but those of an operation marked
``x-nul-allowed`` (gate records, whose bad records are answered one by one).

Responses are checked too when ``app.testing`` (the test suite): an answer that does not match its documented
status, media type and schema raises :class:`ContractBroken` instead of being sent.

The validators are jsonschema-rs's, every subschema of the document compiled once into one map (about a
quarter of a second per process): bench/contract.py measured it against jsonschema and openapi-core, and
docs/architecture.md ("One contract") says why this one.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
from flask import Response, current_app, g, request

from codeservice.jsonapi import BadRequest

OPENAPI = Path(__file__).parent / "openapi.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
METHODS = ("get", "put", "post", "delete", "patch")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_NUMBER = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,18})?")


#: JSON's interoperable whole numbers (RFC 8259, section 6): a number with no fraction in this range is read as a
#: Python int, whether it was written ``2`` or ``2.0`` (the same number to JSON Schema: "integer" takes both).
SAFE_INTEGER = 2**53


def _number(text: str) -> int | float:
    """A JSON number written with a fraction or an exponent (json.loads's ``parse_float``): an int when it has no
    fraction and is at most 2^53 (``2.0``, ``1e3``), else a float."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) <= SAFE_INTEGER else value


class ContractBroken(AssertionError):
    """A response of the app that its document does not allow (raised only when ``app.testing``)."""


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@dataclass
class Check:
    """One compiled schema (at *pointer* in the document) and what a refusal by it is answered with."""

    validator: Any  # a jsonschema_rs validator
    document: dict[str, Any]
    pointer: str
    error: str
    status: int = 400

    def refusal(self, value: Any, where: str) -> BadRequest | None:
        errors = list(self.validator.iter_errors(value))
        if not errors:
            return None
        # The outermost first (as jsonschema's best_match): an unknown or missing member before a member's value.
        error = min(errors, key=lambda e: len(e.instance_path))
        path = "".join(f"/{part}" for part in error.instance_path)
        code = _error_code(self.document, _follow(self.document, self.pointer), error.evaluation_path, self.error)
        return BadRequest(code, f"{where}{path}: {_message(error.message)}", self.status)


@dataclass
class Parameter:
    name: str
    required: bool
    kind: str  # the JSON type the text of the parameter is read as: "integer", "number", "boolean" or "string"
    check: Check
    default: Any = None


@dataclass
class Operation:
    method: str
    path: str
    secured: bool
    path_parameters: list[Parameter] = field(default_factory=list)
    query: list[Parameter] = field(default_factory=list)
    body: Check | None = None
    body_required: bool = False
    max_body_bytes: int | None = None
    nul_allowed: bool = False
    responses: dict[str, dict[str, Check | None]] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse the current request, raising :class:`BadRequest`, unless the document allows it."""
        for parameter in self.path_parameters:
            raw = (request.view_args or {}).get(parameter.name)
            if raw is not None:
                _raise(parameter.check.refusal(_typed(str(raw), parameter.kind), f"path parameter {parameter.name}"))
        g.contract_query = query = {}
        for parameter in self.query:
            values = request.args.getlist(parameter.name)
            if not values:
                if parameter.required:
                    raise BadRequest(parameter.check.error, f"query parameter {parameter.name} is required")
                query[parameter.name] = parameter.default
                continue
            if len(values) > 1:
                raise BadRequest(parameter.check.error, f"query parameter {parameter.name}: give it once")
            value = _typed(values[0], parameter.kind)
            _raise(parameter.check.refusal(value, f"query parameter {parameter.name}"))
            query[parameter.name] = value
        if self.body is None:
            return
        if not request.get_data(cache=True) and not self.body_required:
            g.contract_body = None
            return
        body = _json()
        _raise(self.body.refusal(body, "body"))
        # A NUL in a JSON string is written \u0000 (JSON allows no raw control character in one): only a body with
        # that text can hold one (or a backslash before "u0000", which the walk tells apart).
        if not self.nul_allowed and b"\\u0000" in request.get_data(cache=True):
            _no_nul(body)
        g.contract_body = body

    def check_response(self, response: Response) -> None:
        status = str(response.status_code)
        documented = self.responses.get(status, self.responses.get(f"{status[0]}XX", self.responses.get("default")))
        if documented is None:
            raise ContractBroken(f"{self.method.upper()} {self.path}: status {status} is not documented")
        mimetype = response.mimetype or ""
        if not documented and response.status_code == 204:
            return
        if mimetype not in documented:
            raise ContractBroken(f"{self.method.upper()} {self.path} {status}: media type {mimetype!r} is not "
                                 f"documented ({sorted(documented)})")
        check = documented[mimetype]
        if check is None:
            return
        body = json.loads(response.get_data()) if mimetype.endswith("json") else response.get_data(as_text=True)
        refusal = check.refusal(body, f"{self.method.upper()} {self.path} {status} response")
        if refusal is not None:
            raise ContractBroken(refusal.message)


def _raise(refusal: BadRequest | None) -> None:
    if refusal is not None:
        raise refusal


def _json() -> Any:
    if not request.is_json:
        raise BadRequest("unsupported_media_type", "send a JSON body with Content-Type: application/json", 415)
    try:
        return json.loads(request.get_data(cache=True), parse_constant=_no_constants, parse_float=_number)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid_json", "the body is not valid JSON") from None
    except RecursionError:  # nesting deeper than the parser's stack: no body of ours is like that
        raise BadRequest("invalid_json", "the body is nested too deeply") from None


def _no_nul(value: Any, where: str = "body") -> None:
    """NUL characters cannot be stored in PostgreSQL text: refuse them anywhere in the body."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest("invalid_body", f"{where}: text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key, where)
            _no_nul(item, f"{where}/{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            _no_nul(item, f"{where}/{number}")


def _typed(raw: str, kind: str) -> Any:
    """The text of a parameter as the JSON value its schema types it as; left as text when it is not one."""
    if kind == "integer" and _INTEGER.fullmatch(raw):
        return int(raw)
    if kind == "number" and _NUMBER.fullmatch(raw):
        return float(raw) if "." in raw else int(raw)
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def _error_code(document: dict[str, Any], root: Any, evaluation_path: list[Any], default: str) -> str:
    """The ``x-error-code`` of the innermost schema that names one on the way from *root* to the keyword that
    refused (its evaluation path, which goes through each ``$ref``)."""
    code = default
    node: Any = root
    for part in [*evaluation_path, None]:
        if isinstance(node, dict) and isinstance(node.get("x-error-code"), str):
            code = node["x-error-code"]
        if part is None:
            break
        if part == "$ref" and isinstance(node, dict) and isinstance(node.get("$ref"), str):
            node = _follow(document, node["$ref"])
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            break
    return code


def _message(message: str) -> str:
    """The validator's message without the echo of a long instance."""
    return message if len(message) <= 300 else message[:297] + "..."


def _follow(document: dict[str, Any], ref: str) -> Any:
    """The node at a local reference ``#/a/b~1c``."""
    target: Any = document
    for part in ref[2:].split("/") if ref not in ("#", "") else ():
        part = part.replace("~1", "/").replace("~0", "~")
        target = target[int(part)] if isinstance(target, list) else target[part]
    return target


class Contract:
    """Every operation of the document, compiled."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        # Every subschema of the document, compiled once; "$schema" names the dialect of OpenAPI 3.1.
        self.validators = jsonschema_rs.validator_map_for({**document, "$schema": DIALECT}, validate_formats=True)
        self.operations: dict[tuple[str, str], Operation] = {}
        for path, item in document["paths"].items():
            for method in METHODS:
                if method in item:
                    self.operations[(method.upper(), path)] = self._operation(path, method, item[method])

    @classmethod
    def load(cls, path: Path = OPENAPI) -> Contract:
        return cls(json.loads(path.read_text("utf-8")))

    def _check(self, pointer: str, error: str, status: int = 400) -> Check:
        validator = self.validators.get("#" + pointer)
        if validator is None:
            raise KeyError(f"no schema at {pointer} in the document")
        return Check(validator, self.document, "#" + pointer, error, status)

    def _operation(self, path: str, method: str, operation: dict[str, Any]) -> Operation:
        base = f"/paths/{_escape(path)}/{method}"
        result = Operation(method, path, secured=bool(operation.get("security")),
                           max_body_bytes=operation.get("x-max-body-bytes"),
                           nul_allowed=operation.get("x-nul-allowed", False))
        for number, parameter in enumerate(operation.get("parameters", [])):
            pointer = f"{base}/parameters/{number}"
            if "$ref" in parameter:
                pointer = parameter["$ref"][1:]
                parameter = self._follow(parameter["$ref"])
            schema = parameter.get("schema", {})
            if "$ref" in schema:
                schema = self._follow(schema["$ref"])
            location = parameter["in"]
            if location not in ("path", "query"):
                continue
            default = {"path": "not_found", "query": "invalid_query"}[location]
            code = parameter.get("x-error-code", default)
            status = 404 if code == "not_found" else 400
            check = self._check(f"{pointer}/schema", code, status)
            typed = Parameter(parameter["name"], parameter.get("required", False), schema.get("type", "string"), check,
                              schema.get("default"))
            (result.path_parameters if location == "path" else result.query).append(typed)
        body = operation.get("requestBody")
        if body is not None:
            pointer = f"{base}/requestBody"
            if "$ref" in body:
                pointer = body["$ref"][1:]
                body = self._follow(body["$ref"])
            if "application/json" in body.get("content", {}):
                result.body = self._check(f"{pointer}/content/application~1json/schema", "invalid_body")
                result.body_required = body.get("required", False)
        for status, response in operation.get("responses", {}).items():
            pointer = f"{base}/responses/{_escape(status)}"
            if "$ref" in response:
                pointer = response["$ref"][1:]
                response = self._follow(response["$ref"])
            result.responses[status] = {
                mimetype: self._check(f"{pointer}/content/{_escape(mimetype)}/schema", "response")
                if "schema" in media else None
                for mimetype, media in response.get("content", {}).items()
            }
        return result

    def _follow(self, ref: str) -> Any:
        return _follow(self.document, ref)

    def operation_of_request(self) -> Operation | None:
        rule = request.url_rule
        if rule is None:
            return None
        template = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        return self.operations.get((request.method, template))


def _escape(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


@functools.cache
def compiled() -> Contract:
    """The contract of codeservice/openapi.json, compiled on the first call of the process (by create_app)."""
    return Contract.load()


# -- the hooks (registered by codeservice/app.py, in this order) ----------------------------------------------------
def find_operation() -> None:
    """``before_request``, first: the operation of the request, and its body limit before anything reads the body."""
    contract: Contract = current_app.extensions["citycode_contract"]
    operation = contract.operation_of_request() if request.path.startswith("/api/") else None
    g.contract_operation = operation
    g.contract_checked = False
    if operation is not None and operation.max_body_bytes:
        request.max_content_length = operation.max_body_bytes


def check_public_request() -> None:
    """``before_request``, after the body limit's: an operation without ``security`` is checked now."""
    operation: Operation | None = g.get("contract_operation")
    if operation is not None and not operation.secured:
        check_request()


def check_request() -> None:
    """Check the current request against its operation, once; called where its credential has been accepted."""
    operation: Operation | None = g.get("contract_operation")
    if operation is None or g.get("contract_checked"):
        return
    g.contract_checked = True
    operation.check()


def check_response(response: Response) -> Response:
    """``after_request``, when ``app.testing``: the answer is one the document allows, and the view checked the
    request (unless it refused it before, for its credential)."""
    operation: Operation | None = g.get("contract_operation")
    if current_app.testing and operation is not None:
        if operation.secured and not g.get("contract_checked") and response.status_code < 400:
            raise ContractBroken(f"{request.method} {request.path}: the view answered {response.status_code} "
                                 "without checking the request against the document")
        response.direct_passthrough = False
        operation.check_response(response)
    return response
