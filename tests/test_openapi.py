"""codeservice/openapi.json: a valid OpenAPI 3.1 document that describes the API as it really is.

The routes and methods of the Flask app, the reason and kind enumerations of the SDK, the fields of
``Result.to_dict()``, the error codes the code can produce, the document's own examples, real responses of
every endpoint and real SDK results of every certificate reason are checked against the document.
"""

from __future__ import annotations

import ast
import base64
import csv
import dataclasses
import datetime as dt
import hashlib
import inspect
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select, update

import codeservice.accesslog.api
import codeservice.accesslog.models
import codeservice.accesslog.service
import codeservice.app
import codeservice.cards.api
import codeservice.cards.service
import codeservice.certificates.api
import codeservice.certificates.pages
import codeservice.certificates.service
import codeservice.clients.auth
import codeservice.clients.service
import codeservice.config
import codeservice.consent.api
import codeservice.consent.clerk
import codeservice.consent.models
import codeservice.consent.resident
import codeservice.consent.service
import codeservice.dashboard.api
import codeservice.demo
import codeservice.helpers.api
import codeservice.helpers.service
import codeservice.identity.api
import codeservice.identity.residents
import codeservice.identity.session
import codeservice.jsonapi
import codeservice.services
import codeservice.state
import codeservice.transit.api
import codeservice.transit.service
import codeservice.venues.api
import codeservice.venues.points
import codeservice.venues.service
from codeservice.accesslog.models import AccessLogEntry
from codeservice.accesslog.service import entry_hash
from codeservice.app import create_app
from codeservice.certificates.service import certificates_of
from codeservice.clients.service import add_api_client
from codeservice.config import Settings
from codeservice.consent.models import ConsentRequest
from codeservice.demo import DEMO_COMPANY, DEMO_OFFICE, DEMO_OPERATORS
from codeservice.identity.residents import get_resident, list_residents
from codeservice.services import Services
from codeservice.state import StateError
from issuers.certificates import issue_show_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from issuers.trustlist import current_trust_list
from sdk import KINDS, MemoryReplayGuard, Reason, Result, Scene, TrustList, Verifier, base45, load_anchor
from sdk.certid import CertificateId
from sdk.citytime import service_day
from sdk.keys import b64u_decode
from sdk.sdjwt import verify_sd_jwt
from sdk.statuslist import INVALID, SUSPENDED, StatusCache
from tests import test_transit_api as transit_tests
from tests.conftest import as_verifier, make_settings
from tests.test_transit_api import BrowserPhone, gate_verifier, yesterday_noon
from verifiers.scenes import SCENES

SPEC_PATH = codeservice.identity.api.OPENAPI
SPEC_URI = "urn:citycode:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # added to every rule by Flask, not documented


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text("utf-8"))


@pytest.fixture(scope="module")
def registry(spec: dict[str, Any]) -> Registry:
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))


def validator(registry: Registry, pointer: str) -> jsonschema.Draft202012Validator:
    """A JSON Schema 2020-12 validator (the OpenAPI 3.1 dialect) for the schema at *pointer* in the document."""
    return jsonschema.Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry)


def _follow(spec: dict[str, Any], ref: str) -> Any:
    target: Any = spec
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


# -- the app ------------------------------------------------------------------------------------
def _app(tmp_path: Path, services: Services | None = None) -> Flask:
    settings = make_settings(tmp_path)
    app = create_app(settings, services)
    app.testing = True
    return app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return _app(tmp_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def demo_pid(app: Flask) -> str:
    services = app.extensions["citycode"]
    with services.db.session() as db:
        residents = list_residents(db)
    assert residents, "the demo residents are missing"
    return residents[0].pid


def api_rules(app: Flask) -> Iterator[tuple[str, set[str]]]:
    """Each /api/v1 path with its methods, those of every rule of the path together (one view may serve GET and
    another POST of the same path)."""
    paths: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            paths.setdefault(path, set()).update(set(rule.methods or ()) - AUTOMATIC_METHODS)
    yield from paths.items()


# -- checking a response against the document -------------------------------------------------------
def check(
    spec: dict[str, Any], registry: Registry, response: Any, path: str, method: str, *, status: int | None = None
) -> Any:
    """Assert that *response* is documented for *method* *path* and matches its schema; return the body."""
    if status is not None:
        assert response.status_code == status, response.get_data(as_text=True)
    operation = spec["paths"][path][method.lower()]
    code = str(response.status_code)
    assert code in operation["responses"], f"{method} {path}: status {code} is not documented"
    pointer = f"/paths/{escape(path)}/{method.lower()}/responses/{code}"
    documented = operation["responses"][code]
    if "$ref" in documented:
        pointer = documented["$ref"][1:]
        documented = _follow(spec, documented["$ref"])
    return check_content(registry, response, documented, pointer)


def check_content(registry: Registry, response: Any, documented: dict[str, Any], pointer: str) -> Any:
    mimetype = response.mimetype
    content = documented.get("content", {})
    assert mimetype in content, f"{pointer}: media type {mimetype} is not documented ({sorted(content)})"
    for name, header in documented.get("headers", {}).items():
        assert name in response.headers, f"{pointer}: header {name} missing"
        jsonschema.Draft202012Validator(header["schema"]).validate(response.headers[name])
    schema_pointer = f"{pointer}/content/{escape(mimetype)}/schema"
    body = response.get_json() if mimetype == "application/json" else response.get_data(as_text=True)
    validator(registry, schema_pointer).validate(body)
    return body


# -- the document itself ------------------------------------------------------------------------
def test_document_is_valid_openapi_31(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate(spec)


def test_every_schema_is_valid_json_schema(spec: dict[str, Any]) -> None:
    for name, schema in spec["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)


def _media_types_with_examples(node: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "schema" in node and ("example" in node or "examples" in node):
            yield pointer, node
        for key, value in node.items():
            yield from _media_types_with_examples(value, f"{pointer}/{escape(key)}")
    elif isinstance(node, list):
        for number, value in enumerate(node):
            yield from _media_types_with_examples(value, f"{pointer}/{number}")


def test_every_example_matches_its_schema(spec: dict[str, Any], registry: Registry) -> None:
    found = list(_media_types_with_examples(spec))
    assert len(found) >= 8, "examples were not found"
    for pointer, media in found:
        check_schema = validator(registry, f"{pointer}/schema")
        values = [media["example"]] if "example" in media else [e["value"] for e in media["examples"].values()]
        for value in values:
            check_schema.validate(value)


def test_result_schema_has_exactly_the_fields_of_result_to_dict(spec: dict[str, Any]) -> None:
    schema = spec["components"]["schemas"]["VerifyResult"]
    fields = set(Result(accepted=False, reason=Reason.MALFORMED).to_dict())
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) == fields


def test_served_document_is_the_file(client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    response = client.get("/api/v1/openapi.json")
    assert check(spec, registry, response, "/api/v1/openapi.json", "GET", status=200) == spec


def test_routes_and_methods_match_the_app(app: Flask, spec: dict[str, Any]) -> None:
    in_app = {path: methods for path, methods in api_rules(app)}
    in_spec = {
        path: {m.upper() for m in item if m in HTTP_METHODS}
        for path, item in spec["paths"].items()
    }
    assert in_app, "no /api/v1 routes found in the app"
    assert in_spec == in_app


def test_every_path_is_under_api_v1(spec: dict[str, Any]) -> None:
    assert all(path.startswith("/api/v1/") for path in spec["paths"])


def test_reason_enum_is_the_sdk_reasons(spec: dict[str, Any]) -> None:
    enum = spec["components"]["schemas"]["Reason"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == {reason.value for reason in Reason}
    for reason in Reason:
        assert f"`{reason.value}`" in spec["components"]["schemas"]["Reason"]["description"]


def test_kind_enum_is_the_sdk_kinds(spec: dict[str, Any]) -> None:
    assert set(spec["components"]["schemas"]["Kind"]["enum"]) == set(KINDS.values())


#: Every module that answers a request under /api/v1 (or raises what such an answer is made from).
ERROR_MODULES = (
    codeservice.identity.api, codeservice.app, codeservice.clients.auth, codeservice.jsonapi,
    codeservice.certificates.api, codeservice.certificates.pages, codeservice.consent.api, codeservice.consent.service,
    codeservice.transit.api,
    codeservice.transit.service, codeservice.identity.session, codeservice.accesslog.api,
    codeservice.cards.api, codeservice.cards.service, codeservice.helpers.api, codeservice.helpers.service,
    codeservice.venues.api, codeservice.venues.service, codeservice.venues.points,
    codeservice.dashboard.api,
)


def _certificate_states() -> set[str]:
    """What resident_certs._effective_status can return besides ``valid``: the registry's statuses and the
    constants it returns itself (``f"certificate_{state}"`` is built from these)."""
    states = set(codeservice.certificates.service.STATUS_VALUES)
    tree = ast.parse(inspect.getsource(codeservice.certificates.pages._effective_status))
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
            states.add(node.value.value)
    return states - {"valid"}


def _error_codes_in_code() -> set[str]:
    """Every ``error`` value the API can put in an error body, read from the code.

    ``BadRequest(reason, ...)``, ``ConsentError(reason, ...)``, ``refuse(reason, ...)`` (inside
    ``consent.fetch``) and ``TransitError(reason, ...)`` / ``TransitNotFound(reason, ...)`` (transit.py, answered
    by transit_api._refuse) name the reason first, ``_deny(status, reason, ...)`` (auth.py) second; ``jsonify``
    calls name it as ``error=``; the framework's errors are ``_error_code(status)``. ``RecordError`` reasons are
    never an error body (they are answered in the ``rejected`` list of an upload, see
    ``test_record_rejections_are_what_the_code_rejects``).
    """
    codes: set[str] = set()
    for module in ERROR_MODULES:
        tree = ast.parse(inspect.getsource(module))
        # transit_api._refuse passes a TransitError's reason on: BadRequest(exc.reason, ...)
        passthrough = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "_refuse"
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None)
            if name in ("BadRequest", "ConsentError", "refuse", "_deny", "TransitError", "TransitNotFound",
                        "CardError", "HelperError", "VenueError", "VenueNotFound", "PointError", "PointNotFound"):
                first = node.args[1 if name == "_deny" else 0]
                if name == "BadRequest" and id(node) in passthrough and ast.unparse(first) == "exc.reason":
                    continue
                if isinstance(first, ast.JoinedStr):  # f"certificate_{state}"
                    prefix = first.values[0]
                    assert isinstance(prefix, ast.Constant) and prefix.value == "certificate_", ast.unparse(first)
                    codes |= {f"certificate_{state}" for state in _certificate_states()}
                    continue
                if name == "ConsentError" and isinstance(first, ast.Name) and first.id == "reason":
                    continue  # ConsentError(reason, ...) inside refuse() itself, whose callers are read
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), ast.unparse(node)
                codes.add(first.value)
            elif (isinstance(node.func, ast.Attribute) and node.func.attr == "__init__" and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                codes.add(node.args[0].value)  # a ConsentError subclass naming its reason: CodeRefused
            elif name == "jsonify":
                for keyword in node.keywords:
                    if keyword.arg == "error" and isinstance(keyword.value, ast.Constant):
                        codes.add(keyword.value.value)
    codes |= {codeservice.app._error_code(status) for status in range(400, 600)}
    # The refusals of codeservice/contract.py: the default of each place, and every x-error-code of the document.
    codes |= {"invalid_body", "invalid_query", "not_found", "invalid_json", "unsupported_media_type"}
    spec = json.loads(SPEC_PATH.read_text("utf-8"))
    codes |= {node["x-error-code"] for _, node in _walk(spec) if isinstance(node, dict) and "x-error-code" in node}
    return codes


def _documented_error_enums(spec: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """(where, enum) of every error response: the ``error`` enum or const of its ``allOf`` with Error."""
    for pointer, node in _walk(spec):
        if isinstance(node, dict) and isinstance(node.get("allOf"), list) and \
                {"$ref": "#/components/schemas/Error"} in node["allOf"]:
            for part in node["allOf"]:
                error = part.get("properties", {}).get("error", {})
                if "enum" in error:
                    yield pointer, error["enum"]
                elif "const" in error:
                    yield pointer, [error["const"]]


def _walk(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{pointer}/{escape(key)}")
    elif isinstance(node, list):
        for number, value in enumerate(node):
            yield from _walk(value, f"{pointer}/{number}")


def test_error_code_enum_is_what_the_code_returns(spec: dict[str, Any]) -> None:
    found = _error_codes_in_code()
    assert {"invalid_json", "invalid_body", "unknown_scene", "unauthorised", "frozen", "internal_error",
            "rate_limited", "already_fetched", "certificate_not_yet_valid", "invalid_identifier", "no_challenge",
            "key_in_use", "status_list_full", "not_cleared", "invalid_fares", "unknown_site"} <= found
    assert not {"invalid_record", "wrong_operator", "record_id_conflict"} & found  # never an error body
    enum = spec["components"]["schemas"]["ErrorCode"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == found
    description = spec["components"]["schemas"]["ErrorCode"]["description"]
    for code in enum:
        assert f"- `{code}`" in description, code
    # Every error a response documents is a real one, and every real one is documented somewhere.
    documented: set[str] = set()
    for pointer, codes in _documented_error_enums(spec):
        assert set(codes) <= found, (pointer, set(codes) - found)
        documented |= set(codes)
    assert found - documented <= {"bad_request", "error"}, found - documented  # the framework's catch-alls


def test_record_rejections_are_what_the_code_rejects(spec: dict[str, Any]) -> None:
    """A gate record the service refuses is answered in ``rejected`` as ``"<reason>: <message>"``: the reasons of
    ``RecordError(reason, ...)`` and the constant ``error`` texts of transit.py are the pattern's alternatives."""
    reasons: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(codeservice.transit.service))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RecordError":
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), ast.unparse(node)
            reasons.add(first.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "error" and isinstance(value, ast.Constant):
                    reasons.add(value.value.split(": ", 1)[0])
    assert reasons == {"invalid_record", "wrong_operator", "record_id_conflict", "unproven"}, reasons
    pattern = spec["components"]["schemas"]["RecordRejection"]["properties"]["error"]["pattern"]
    match = re.fullmatch(r"\^\(([a-z_|]+)\): ", pattern)
    assert match is not None, pattern
    assert set(match.group(1).split("|")) == reasons
    for reason in reasons:
        assert f"`{reason}`" in spec["components"]["schemas"]["RecordRejection"]["properties"]["error"]["description"]


def test_error_statuses_are_documented_where_they_occur(spec: dict[str, Any]) -> None:
    verify = spec["paths"]["/api/v1/verify"]["post"]["responses"]
    assert {"200", "400", "405", "413", "415", "500", "503"} <= set(verify)
    me = spec["paths"]["/api/v1/me/code"]["get"]["responses"]
    assert {"200", "401", "403", "405", "500"} <= set(me)
    assert {"200", "503"} <= set(spec["paths"]["/api/v1/health"]["get"]["responses"])
    assert {"200", "404", "405", "500"} <= set(spec["paths"]["/api/v1/status/{department}"]["get"]["responses"])


def test_the_schemas_are_not_vacuous(spec: dict[str, Any], registry: Registry) -> None:
    """The result schema refuses what the code never produces, so the checks below can fail."""
    result = validator(registry, "/components/schemas/VerifyResult")
    good = {
        "accepted": True, "reason": "ok", "message": "accepted", "detail": "", "kind": "id",
        "subject": "f7pchclco3xqw2yw", "issued_at": 1795436245, "expires_at": 1795436305,
        "kid": "60326ec9034bdae6", "issuer": "city-id", "code_id": "cb38c6ec4c1a5237", "scene": None,
        "cert_id": None, "cert_type": None, "holder": None, "fields": None, "status_age": None,
        "card_type": None, "fare_limit": None, "credential_id": None, "credential_expires_at": None,
        "home_city": None,
    }
    result.validate(good)
    cert = {
        **good, "kind": "cert", "subject": None, "issuer": "civil-affairs", "cert_id": "1.2.156.3005.2.LNYD.CA01.7.1.Q",
        "cert_type": "LNYD", "holder": "f7pchclco3xqw2yw", "fields": {"age_over_60": True, "grade": 3, "name": "x"},
        "status_age": 12,
    }
    result.validate(cert)
    result.validate({**cert, "accepted": False, "reason": "status_unknown", "status_age": None})
    result.validate({**cert, "accepted": False, "reason": "certificate_expired", "status_age": None})
    result.validate({**cert, "accepted": False, "reason": "untrusted_issuer", "status_age": None})
    result.validate({**good, "accepted": False, "reason": "wrong_kind", "kind": "cert", "subject": None})
    result.validate({**good, "accepted": False, "reason": "suspended", "detail": "identity frozen"})
    for bad in (
        {**good, "reason": "no_such_reason"},
        {**good, "reason": "expired"},  # accepted with a refusal reason
        {**good, "accepted": False},  # refused with reason ok
        {**good, "kid": "60326EC9034BDAE6"},
        {**good, "kind": "passport"},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "scene"},
        {**good, "kind": None},
        {k: v for k, v in good.items() if k != "status_age"},
        {**good, "cert_id": "1.2.156.3005.2.LNYD.CA01.7.1.Q"},  # certificate fields on an id code
        {**good, "status_age": 5},
        {**cert, "fields": None},  # an accepted certificate without its fields
        {**cert, "status_age": None},  # accepted without a status list
        {**cert, "status_age": "12"},
        {**cert, "fields": {"address": {"street": "x"}}},
        {**cert, "fields": {"age_over_60": None}},
        {**cert, "holder": ""},
        {**good, "accepted": False, "reason": "revoked"},  # a certificate reason for an id code
        {**good, "accepted": False, "reason": "suspended", "kind": "ride"},
        {**cert, "accepted": False, "reason": "suspended", "status_age": None},
        {**cert, "accepted": False, "reason": "status_stale", "status_age": None},
        {**cert, "accepted": False, "reason": "certificate_expired"},  # the status is not looked up first
    ):
        assert not result.is_valid(bad), bad
    ride = {
        **good, "kind": "ride", "issuer": "city-transit", "code_id": "0f1e2d3c4b5a6978" + "ab" * 8,
        "status_age": 40, "card_type": "student", "fare_limit": 2000, "credential_id": "0f1e2d3c4b5a6978",
        "credential_expires_at": 1795500000,
    }
    result.validate(ride)
    for reason in ("revoked", "suspended", "status_stale", "replayed", "fare_limit_exceeded", "passback"):
        result.validate({**ride, "accepted": False, "reason": reason})
    for reason in ("code_stale", "credential_expired", "card_not_accepted"):
        result.validate({**ride, "accepted": False, "reason": reason, "status_age": None})
    result.validate({**ride, "accepted": False, "reason": "status_unknown", "status_age": None})
    result.validate({**good, "accepted": False, "reason": "wrong_kind", "kind": "ridecred", "issuer": "city-transit"})
    result.validate({**good, "accepted": False, "reason": "passback"})
    result.validate({**cert, "accepted": False, "reason": "capacity_reached"})
    for bad in (
        {**ride, "card_type": None},  # a ride code always carries its credential's fields
        {**ride, "card_type": "vip"},
        {**ride, "fare_limit": -1},
        {**ride, "credential_id": "0F1E2D3C4B5A6978"},
        {**ride, "code_id": "cb38c6ec4c1a5237"},  # the replay id is the credential id and the nonce
        {**ride, "status_age": None},  # accepted without the transit status list
        {**ride, "cert_id": "1.2.156.3005.2.LNYD.CA01.7.1.Q"},
        {**good, "card_type": "adult"},  # ride fields on an id code
        {**good, "accepted": True, "kind": "ridecred", "issuer": "city-transit"},  # never accepted on its own
        {**ride, "accepted": False, "reason": "code_stale"},  # decided before the status list
        {**ride, "accepted": False, "reason": "passback", "status_age": None},
        {**good, "accepted": False, "reason": "code_stale"},  # a ride reason for an id code
        {**cert, "accepted": False, "reason": "card_not_accepted"},
    ):
        assert not result.is_valid(bad), bad
    error = validator(registry, "/components/schemas/Error")
    error.validate({"error": "invalid_json", "message": "x"})
    assert not error.is_valid({"error": "teapot", "message": "x"})
    assert not error.is_valid({"error": "invalid_json"})


# -- real responses ---------------------------------------------------------------------------------
def vpost(client: FlaskClient, body: Any) -> Any:
    """POST /api/v1/verify with a verifier's key: the whole result (an anonymous caller learns only
    ``{accepted, reason}``)."""
    return client.post("/api/v1/verify", headers=as_verifier(client.application), json=body)


def test_verify_responses(app: Flask, client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    services = app.extensions["citycode"]
    code = services.issue_identity_code(demo_pid(app))

    body = check(spec, registry, vpost(client, {"code": code}), "/api/v1/verify", "POST",
                 status=200)
    assert body["accepted"] is True and body["scene"] is None

    body = check(spec, registry, vpost(client, {"code": code, "scene": "bus"}),
                 "/api/v1/verify", "POST", status=200)
    assert body["accepted"] is True and body["scene"] == "bus"
    body = check(spec, registry, vpost(client, {"code": code, "scene": "bus"}),
                 "/api/v1/verify", "POST", status=200)
    assert body["reason"] == "replayed"

    raw = bytearray(base45.b45decode(code[4:]))
    raw[-1] ^= 0x01
    tampered = "CC1:" + base45.b45encode(bytes(raw))
    body = check(spec, registry, vpost(client, {"code": tampered, "scene": None}),
                 "/api/v1/verify", "POST", status=200)
    assert body["reason"] == "bad_signature" and body["kid"] and body["subject"] is None

    for text, reason in (("https://example.org/", "not_a_citycode"), ("CC1:abc", "malformed")):
        body = check(spec, registry, vpost(client, {"code": text}), "/api/v1/verify", "POST",
                     status=200)
        assert body["reason"] == reason

    future = services.issue_identity_code(demo_pid(app), now=time.time() + 3600)
    body = check(spec, registry, vpost(client, {"code": future}), "/api/v1/verify", "POST",
                 status=200)
    assert body["reason"] == "not_yet_valid" and body["subject"] is not None


@pytest.mark.parametrize(
    ("data", "content_type", "status", "error"),
    [
        ("{", "application/json", 400, "invalid_json"),
        (b'"\xff"', "application/json", 400, "invalid_json"),
        ("[1]", "application/json", 400, "invalid_body"),
        ('{"code": 1}', "application/json", 400, "invalid_body"),
        ('{"code": "CC1:", "scene": 7}', "application/json", 400, "invalid_body"),
        ('{"code": "CC1:", "extra": true}', "application/json", 400, "invalid_body"),
        ('{"scene": "bus"}', "application/json", 400, "invalid_body"),
        ('{"code": "CC1:", "scene": "tram"}', "application/json", 422, "unknown_scene"),
        ('{"code": "CC1:"}', "text/plain", 415, "unsupported_media_type"),
        ("{}", None, 415, "unsupported_media_type"),
        ('{"code": "' + "A" * 70_000 + '"}', "application/json", 413, "body_too_large"),
    ],
)
def test_verify_errors(
    client: FlaskClient, spec: dict[str, Any], registry: Registry, data: Any, content_type: str | None, status: int,
    error: str,
) -> None:
    response = client.post("/api/v1/verify", data=data, content_type=content_type)
    body = check(spec, registry, response, "/api/v1/verify", "POST", status=status)
    assert body["error"] == error


class BrokenState:
    """A state store that cannot be reached, as a Redis that is down."""

    def add_once(self, key: str, ttl: float) -> bool:
        raise StateError("state store unreachable: ConnectionError")

    def ping(self) -> bool:
        return False


def test_replay_guard_unavailable_is_503_with_the_result(tmp_path: Path, spec: dict[str, Any],
                                                           registry: Registry) -> None:
    services = Services(Settings.from_env({"CITYCODE_HOME": str(tmp_path)}))
    services.__dict__["state"] = BrokenState()  # before the online verifier is built from it
    app = _app(tmp_path, services)
    client = app.test_client()
    code = services.issue_identity_code(demo_pid(app))
    response = client.post("/api/v1/verify", json={"code": code, "scene": "metro-gate"})
    body = check(spec, registry, response, "/api/v1/verify", "POST", status=503)
    assert body["reason"] == "replay_guard_unavailable" and body["accepted"] is False
    # a scene that is not single-use does not need the guard
    response = client.post("/api/v1/verify", json={"code": code, "scene": "service-window"})
    assert check(spec, registry, response, "/api/v1/verify", "POST", status=200)["accepted"] is True

    body = check(spec, registry, client.get("/api/v1/health"), "/api/v1/health", "GET", status=503)
    assert body == {"status": "degraded", "database": True, "state": False}


def test_health(client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    body = check(spec, registry, client.get("/api/v1/health"), "/api/v1/health", "GET", status=200)
    assert body["status"] == "ok"


def test_scenes(client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    body = check(spec, registry, client.get("/api/v1/scenes"), "/api/v1/scenes", "GET", status=200)
    assert {"bus", "service-window"} <= {scene["name"] for scene in body["scenes"]}
    assert all(type(scene["max_status_age"]) is int for scene in body["scenes"])
    scene = validator(registry, "/components/schemas/Scene")
    strict = Scene("elder-discount", frozenset({"cert"}), single_use=False, cert_rules={"LNYD": {"age_over_60"}},
                   max_status_age=600)
    scene.validate(strict.to_dict())
    assert not scene.is_valid({**strict.to_dict(), "cert_rules": {"LNYD": "age_over_60"}})
    assert not scene.is_valid({**strict.to_dict(), "max_status_age": 0})
    students = Scene("student-bus", frozenset({"ride"}), single_use=True, card_types=frozenset({"student"}))
    scene.validate(students.to_dict())
    assert not scene.is_valid({**students.to_dict(), "card_types": ["vip"]})


def test_trust_list_and_anchor(client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    token = check(spec, registry, client.get("/api/v1/trust-list"), "/api/v1/trust-list", "GET", status=200)
    pem = check(spec, registry, client.get("/api/v1/trust-anchor"), "/api/v1/trust-anchor", "GET", status=200)
    from sdk import TrustList, load_anchor

    TrustList.load(token, load_anchor(pem))  # the anchor really verifies the list
    validator(registry, "/components/schemas/TrustListHeader").validate(jwt.get_unverified_header(token))
    claims = jwt.decode(token, load_anchor(pem), algorithms=["ES256"])
    validator(registry, "/components/schemas/TrustListClaims").validate(claims)
    assert claims["keys"] and claims["keys"][0]["kinds"] == ["id"]
    assert claims["keys"][0]["cert_types"] == []


def test_status_list(app: Flask, client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    path = "/api/v1/status/{department}"
    trust = client.get("/api/v1/trust-list").get_data(as_text=True)
    anchor = client.get("/api/v1/trust-anchor").get_data(as_text=True)
    from sdk import TrustList, load_anchor

    trusted = TrustList.load(trust, load_anchor(anchor))
    departments = sorted({k.issuer for k in trusted.keys.values() if "cert" in k.kinds})
    assert departments, "the demo departments are missing"
    for department in departments:
        response = client.get(f"/api/v1/status/{department}")
        token = check(spec, registry, response, path, "GET", status=200)
        validator(registry, "/components/schemas/StatusListHeader").validate(jwt.get_unverified_header(token))
        claims = jwt.decode(token, options={"verify_signature": False})
        validator(registry, "/components/schemas/StatusListClaims").validate(claims)
        assert claims["iss"] == department and claims["sub"].endswith(f"/api/v1/status/{department}")
        assert response.headers["Cache-Control"] == f"public, max-age={claims['ttl']}"
        assert StatusCache().load(token, trusted).issuer == department  # a gate can use it
    body = check(spec, registry, client.get("/api/v1/status/no-such-department"), path, "GET", status=404)
    assert body["error"] == "not_found"


def test_trust_list_names_the_certificate_types_of_an_issuer(app: Flask, client: FlaskClient, spec: dict[str, Any],
                                                           registry: Registry) -> None:
    services = app.extensions["citycode"]
    services.keyring.add_issuer(CERT_ISSUER)
    services.keyring.allow_cert_type(CERT_ISSUER.id, "ZZXX")
    token = check(spec, registry, client.get("/api/v1/trust-list"), "/api/v1/trust-list", "GET", status=200)
    claims = jwt.decode(token, options={"verify_signature": False})
    validator(registry, "/components/schemas/TrustListClaims").validate(claims)
    entry = next(k for k in claims["keys"] if k["issuer"] == CERT_ISSUER.id)
    assert entry["kinds"] == ["cert"] and entry["cert_types"] == ["TSTX", "ZZXX"]
    key = validator(registry, "/components/schemas/TrustListKey")
    assert not key.is_valid({**entry, "cert_types": "TSTX"})
    assert not key.is_valid({k: v for k, v in entry.items() if k != "cert_types"})


def test_my_code(app: Flask, client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    body = check(spec, registry, client.get("/api/v1/me/code"), "/api/v1/me/code", "GET", status=401)
    assert body["error"] == "unauthorised"

    with client.session_transaction() as session:
        session["resident"] = "aaaaaaaaaaaaaaaa"  # well-formed, but nobody
    body = check(spec, registry, client.get("/api/v1/me/code"), "/api/v1/me/code", "GET", status=401)
    assert body["error"] == "unauthorised"

    pid = demo_pid(app)
    with client.session_transaction() as session:
        session["resident"] = pid
    body = check(spec, registry, client.get("/api/v1/me/code"), "/api/v1/me/code", "GET", status=200)
    assert body["expires_at"] - body["issued_at"] == app.extensions["citycode"].settings.code_lifetime
    assert base64.b64decode(body["svg"].split(",", 1)[1]).startswith(b"<")
    body_code = body["code"]
    result = vpost(client, {"code": body_code}).get_json()
    assert result["accepted"] is True and result["subject"] == pid

    services = app.extensions["citycode"]
    with services.db.session() as db:
        get_resident(db, pid).frozen = True
    body = check(spec, registry, client.get("/api/v1/me/code"), "/api/v1/me/code", "GET", status=403)
    assert body["error"] == "frozen"
    # online, the code made before the freeze is refused at once
    result = check(spec, registry, vpost(client, {"code": body_code}), "/api/v1/verify",
                   "POST", status=200)
    assert result["reason"] == "suspended" and result["kind"] == "id" and result["subject"] == pid
    assert result["cert_id"] is None and result["status_age"] is None


def test_wrong_method_and_unknown_path(app: Flask, client: FlaskClient, spec: dict[str, Any],
                                       registry: Registry) -> None:
    for path, methods in api_rules(app):
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - methods:
            response = client.open(path, method=method)
            body = check(spec, registry, response, path, next(iter(methods)), status=405)
            assert body["error"] == "method_not_allowed"
            assert "Allow" in spec["components"]["responses"]["MethodNotAllowed"]["headers"]
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    not_found = spec["components"]["responses"]["NotFound"]
    body = check_content(registry, response, not_found, "/components/responses/NotFound")
    assert body["error"] == "not_found"


def test_method_not_allowed_names_the_allowed_methods(app: Flask, client: FlaskClient, spec: dict[str, Any]) -> None:
    """RFC 9110 section 15.5.6: a 405 carries Allow, which lists the documented methods and HEAD, OPTIONS."""
    header = spec["components"]["responses"]["MethodNotAllowed"]["headers"]["Allow"]
    assert header["required"] is True
    for path, item in spec["paths"].items():
        documented = {m.upper() for m in item if m in HTTP_METHODS}
        wrong = "DELETE" if "DELETE" not in documented else "PUT"
        response = client.open(path, method=wrong)
        assert response.status_code == 405
        allowed = response.headers.get("Allow", "").split(", ")
        assert len(allowed) == len(set(allowed)), allowed
        expected = documented | {"OPTIONS"} | ({"HEAD"} if "GET" in documented else set())
        assert set(allowed) == expected, (path, allowed)


# -- certificates, checks, consent, queue and audit: real responses ---------------------------------------
ROLE_SCHEMES = {"adminKey": "admin", "verifierKey": "verifier", "clerkKey": "clerk", "deviceKey": "device",
                "auditorKey": "auditor", "operatorKey": "operator"}
#: Bearer keys that are not API clients' but a venue's or a service point's own (codeservice/venues/service.py).
OWN_KEY_SCHEMES = ("venueKey", "pointKey")
#: The operator of the test's operator key and gate (a demo operator).
OPERATOR = "qd-metro"
PURPOSE = "elderly allowance application"
CHECK_PURPOSE = "free entry for over-60s"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(app: Flask) -> dict[str, str]:
    """A fresh API key of every role; the clerks and the kiosk (``device``) work at the demo office, the gate (also
    a ``device``) and the operator staff at the demo metro."""
    with app.extensions["citycode"].db.session() as session:
        made = {
            "admin": add_api_client(session, "City administration", "admin"),
            "verifier": add_api_client(session, "Scenic site ticket office", "verifier", ["LNYD", "SPJY"],
                                       ["age_over_60", "catering"], rate_per_minute=1000),
            "clerk": add_api_client(session, "Clerk Test", "clerk", office=DEMO_OFFICE, rate_per_minute=1000),
            "other_clerk": add_api_client(session, "Clerk Other", "clerk", office=DEMO_OFFICE, rate_per_minute=1000),
            "device": add_api_client(session, "Kiosk Test", "device", office=DEMO_OFFICE, rate_per_minute=1000),
            "auditor": add_api_client(session, "City audit office", "auditor"),
            "operator": add_api_client(session, "Metro clearing desk", "operator", operator=OPERATOR),
            "gate": add_api_client(session, "Gate 101-1", "device", operator=OPERATOR),
        }
    return {name: key for name, (_, key) in made.items()}


def residents_of(app: Flask) -> tuple[str, str]:
    """The demo elder (holds an elderly card, LNYD) and adult (a disability certificate, CJRZ)."""
    with app.extensions["citycode"].db.session() as session:
        elder, adult = list_residents(session)[:2]
        return elder.pid, adult.pid


def cert_id_of(app: Flask, holder: str, type_code: str) -> str:
    with app.extensions["citycode"].db.session() as session:
        return next(c.id for c in certificates_of(session, holder) if c.type_code == type_code)


def signed_in(app: Flask, pid: str) -> FlaskClient:
    client = app.test_client()
    with client.session_transaction() as session:
        session["resident"] = pid
    return client


def call(client: FlaskClient, key: str | None, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    headers = bearer(key) if key else {}
    if body is not None:
        kwargs.update(data=body if isinstance(body, str) else json.dumps(body), content_type="application/json")
    return client.open(path, method=method, headers=headers, **kwargs)


def trust_of(client: FlaskClient) -> TrustList:
    token = client.get("/api/v1/trust-list").get_data(as_text=True)
    return TrustList.load(token, load_anchor(client.get("/api/v1/trust-anchor").get_data()))


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method.upper(), operation


def test_every_bearer_role_and_session_is_what_the_code_checks(app: Flask, keys: dict[str, str],
                                                                spec: dict[str, Any], registry: Registry) -> None:
    """Both ways: an operation documented with a role's key (or with alternatives: an operator or an admin key)
    answers 401 without a key, 403 to every role outside the documented ones, and neither 401 nor 403 to each of
    them; one documented with the resident session answers 401 without it; one documented with no security answers
    without credentials. Path parameters are placeholders (the operator's own id for ``{operator_id}``): the key is
    checked first. A device key is a kiosk's, or at /api/v1/gate/ a gate's."""
    schemes = spec["components"]["securitySchemes"]
    assert {name for name, scheme in schemes.items() if scheme.get("scheme") == "bearer"} == \
        set(ROLE_SCHEMES) | set(OWN_KEY_SCHEMES)
    assert set(ROLE_SCHEMES.values()) == set(codeservice.clients.service.ROLES)
    client = app.test_client()
    seen_roles = set()
    alternatives = 0
    for path, method, operation in _operations(spec):
        concrete = re.sub(r"\{[^}]+\}", "x", path.replace("{operator_id}", OPERATOR))
        security = operation["security"]
        optional = {} in security  # a key is optional: without one the answer says less (POST /api/v1/verify)
        security = [requirement for requirement in security if requirement]
        assert all(len(requirement) == 1 for requirement in security), path  # one scheme per alternative
        documented = [next(iter(requirement)) for requirement in security]
        response = call(client, None, method, concrete)
        if optional:
            assert documented and all(scheme in ROLE_SCHEMES for scheme in documented), path
            assert response.status_code not in (401, 403), path
            body = check(spec, registry, call(client, "cc_a_not-a-key", method, concrete), path, method, status=401)
            assert body["error"] == "unauthorised"
            roles = [ROLE_SCHEMES[scheme] for scheme in documented]
            for other in set(ROLE_SCHEMES.values()) - set(roles):
                body = check(spec, registry, call(client, keys[other], method, concrete), path, method, status=403)
                assert body["error"] == "forbidden", (path, other)
            for role in roles:
                assert call(client, keys[role], method, concrete).status_code not in (401, 403), (path, role)
        elif documented and all(scheme in ROLE_SCHEMES for scheme in documented):
            roles = [ROLE_SCHEMES[scheme] for scheme in documented]
            alternatives += len(roles) > 1
            seen_roles.update(roles)
            body = check(spec, registry, response, path, method, status=401)
            assert body["error"] == "unauthorised" and response.headers["WWW-Authenticate"] == 'Bearer realm="citycode"'
            body = check(spec, registry, call(client, "cc_a_not-a-key", method, concrete), path, method, status=401)
            needs = " or ".join(roles)  # require_client's message, in the order of the alternatives
            needs = ("an " if needs[0] in "aeiou" else "a ") + needs
            for other in set(ROLE_SCHEMES.values()) - set(roles):
                body = check(spec, registry, call(client, keys[other], method, concrete), path, method, status=403)
                assert body == {"error": "forbidden", "message": f"this endpoint needs {needs} key"}, (path, other)
            for role in roles:
                key = keys["gate" if role == "device" and path.startswith("/api/v1/gate/") else role]
                right = call(client, key, method, concrete)
                assert right.status_code not in (401, 403), (path, role, right.get_data(as_text=True))
        elif len(documented) == 1 and documented[0] in OWN_KEY_SCHEMES:  # a venue's own key, not a client's
            body = check(spec, registry, response, path, method, status=401)
            assert body["error"] == "unauthorised" and response.headers["WWW-Authenticate"] == 'Bearer realm="citycode"'
            for role in ROLE_SCHEMES.values():  # no client key of any role is one
                assert call(client, keys[role], method, concrete).status_code == 401, (path, role)
        elif documented == ["residentSession"]:
            body = check(spec, registry, response, path, method, status=401)
            assert body["error"] == "unauthorised" and "WWW-Authenticate" not in response.headers
        else:
            assert documented == [], (path, documented)
            assert response.status_code not in (401, 403), path
    assert seen_roles == set(ROLE_SCHEMES.values())
    assert alternatives == 5  # the operator endpoints


def test_admin_departments_and_types(client: FlaskClient, keys: dict[str, str], spec: dict[str, Any],
                                     registry: Registry) -> None:
    admin = keys["admin"]
    path = "/api/v1/admin/departments"
    department = {"id": "tax-office", "name": "City Tax Office", "org_code": "11370200004598765R"}
    body = check(spec, registry, call(client, admin, "POST", path, department), path, "POST", status=201)
    assert body == department
    for sent, status, error in (
        ({**department, "id": "city-id", "org_code": "113702000045876541"}, 409, "conflict"),  # the identity office
        (department, 409, "conflict"),
        ({**department, "id": "land-office"}, 409, "conflict"),  # the org code is taken
        ({**department, "id": "Tax Office", "org_code": "113702000045765438"}, 400, "invalid_value"),
        ({**department, "id": "land-office", "org_code": "11370200004565432X"}, 422, "invalid_value"),  # check char
        ({**department, "extra": 1}, 400, "invalid_body"),
        ({**department, "name": "\x00"}, 400, "invalid_body"),
        ("{", 400, "invalid_json"),
    ):
        response = call(client, admin, "POST", path, sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent
    response = client.post(path, data=json.dumps(department), content_type="text/plain", headers=bearer(admin))
    assert check(spec, registry, response, path, "POST", status=415)["error"] == "unsupported_media_type"
    response = call(client, admin, "POST", path, {"id": "x" * 70_000})
    assert check(spec, registry, response, path, "POST", status=413)["error"] == "body_too_large"

    path = "/api/v1/admin/cert-types"
    cert_type = {"code": "JZZ", "name": "Residence permit", "department": "tax-office", "holder_kind": "resident",
                 "fields": [{"name": "name", "label": "Name"},
                            {"name": "birth_date", "type": "date", "disclosable": False},
                            {"name": "married", "type": "bool", "label": None}],
                 "predicates": [{"field": "birth_date", "op": "age_over", "value": 18, "label": "adult"}]}
    body = check(spec, registry, call(client, admin, "POST", path, cert_type), path, "POST", status=201)
    assert body["validity_days"] == 365 and body["predicates"][0]["name"] == "age_over_18"
    assert body["fields"][1] == {"name": "birth_date", "label": "birth_date", "type": "date", "disclosable": False}
    validator(registry, "/components/schemas/CertTypeRequest").validate(cert_type)
    for sent, status, error in (
        (cert_type, 409, "conflict"),
        ({**cert_type, "code": "JZZB", "department": "nowhere"}, 422, "unknown_department"),
        ({**cert_type, "code": "JZZB", "validity_days": 365.5}, 400, "invalid_body"),
        ({**cert_type, "code": "JZZB", "validity_days": 0}, 400, "invalid_value"),
        ({**cert_type, "code": "JZZB", "validity_days": "365"}, 400, "invalid_body"),
        ({**cert_type, "code": "JZZB", "holder_kind": "pet"}, 400, "invalid_value"),
        ({**cert_type, "code": "JZZB", "predicates": [{"field": "name", "op": "age_over", "value": 18}]}, 422,
         "invalid_value"),
    ):
        response = call(client, admin, "POST", path, sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent


def test_admin_certificates_and_residents(app: Flask, client: FlaskClient, keys: dict[str, str],
                                          spec: dict[str, Any], registry: Registry) -> None:
    admin = keys["admin"]
    elder, adult = residents_of(app)
    path = "/api/v1/admin/certificates"
    sent = {"type": "CJRZ", "holder": elder,
            "fields": {"name": "Li Wei", "birth_date": "1952-03-14", "category": "visual", "grade": "2"}}
    validator(registry, "/components/schemas/CertificateRequest").validate(sent)
    body = check(spec, registry, call(client, admin, "POST", path, sent), path, "POST", status=201)
    assert body["status"] == "valid" and body["fields"]["grade"] == 2 and body["holder"] == elder
    cert_id = body["id"]
    assert str(CertificateId.parse(cert_id)) == cert_id
    company = {"type": "SPJY", "holder": DEMO_COMPANY, "number": "JY13702000000001",
               "fields": {"company_name": "Harbour Noodle House Co., Ltd.", "operating_items": "Noodles",
                          "address": "18 Zhongshan Road", "catering": "yes"}}
    body = check(spec, registry, call(client, admin, "POST", path, company), path, "POST", status=201)
    assert body["holder_kind"] == "company" and body["fields"]["catering"] is True
    for wrong, status, error in (
        ({**sent, "type": "NOPE"}, 422, "unknown_type"),
        ({**sent, "holder": "aaaaaaaaaaaaaaaa"}, 422, "unknown_holder"),
        ({**sent, "fields": {**sent["fields"], "grade": 2.5}}, 400, "invalid_value"),
        ({**sent, "fields": {**sent["fields"], "colour": "red"}}, 422, "invalid_value"),
        ({**sent, "fields": ["name"]}, 400, "invalid_body"),
        ({**company, "holder": "91370200MA3C8N2K1X"}, 422, "invalid_value"),
    ):
        response = call(client, admin, "POST", path, wrong)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, wrong

    path = "/api/v1/admin/certificates/{cert_id}"
    body = check(spec, registry, call(client, admin, "GET", f"/api/v1/admin/certificates/{cert_id}"), path, "GET",
                 status=200)
    assert body["id"] == cert_id
    wrong_check = cert_id[:-1] + ("A" if cert_id[-1] != "A" else "B")
    body = check(spec, registry, call(client, admin, "GET", f"/api/v1/admin/certificates/{wrong_check}"), path, "GET",
                 status=422)
    assert body["error"] == "invalid_identifier"
    unknown = str(CertificateId.build("CJRZ", "51370200004523456E", "99999999", 1))
    body = check(spec, registry, call(client, admin, "GET", f"/api/v1/admin/certificates/{unknown}"), path, "GET",
                 status=404)
    assert body["error"] == "not_found"

    path = "/api/v1/admin/certificates/{cert_id}/status"
    url = f"/api/v1/admin/certificates/{cert_id}/status"
    for status in ("suspended", "valid", "revoked"):
        body = check(spec, registry, call(client, admin, "POST", url, {"status": status}), path, "POST", status=200)
        assert body["status"] == status
    for sent, code, error, target in (
        ({"status": "valid"}, 409, "conflict", url),
        ({"status": "lost"}, 400, "invalid_body", url),
        ({"status": "revoked"}, 422, "invalid_identifier", f"/api/v1/admin/certificates/{wrong_check}/status"),
        ({"status": "revoked"}, 404, "not_found", f"/api/v1/admin/certificates/{unknown}/status"),
    ):
        response = call(client, admin, "POST", target, sent)
        assert check(spec, registry, response, path, "POST", status=code)["error"] == error, sent

    for action, frozen in (("freeze", True), ("unfreeze", False)):
        path = f"/api/v1/admin/residents/{{pid}}/{action}"
        body = check(spec, registry, call(client, admin, "POST", f"/api/v1/admin/residents/{adult}/{action}"), path,
                     "POST", status=200)
        assert body == {"id": adult, "frozen": frozen}
        body = check(spec, registry, call(client, admin, "POST", f"/api/v1/admin/residents/aaaaaaaaaaaaaaaa/{action}"),
                     path, "POST", status=404)
        assert body["error"] == "not_found"


def test_yes_no_checks_and_their_receipts(app: Flask, client: FlaskClient, keys: dict[str, str],
                                          spec: dict[str, Any], registry: Registry) -> None:
    services = app.extensions["citycode"]
    elder, adult = residents_of(app)
    path = "/api/v1/checks"
    verifier = keys["verifier"]
    trust = trust_of(client)
    for sent, answer in (
        ({"type": "LNYD", "code": services.issue_identity_code(elder), "predicate": "age_over_60"}, True),
        ({"type": "LNYD", "code": services.issue_identity_code(adult), "predicate": "age_over_60"}, False),
        ({"type": "SPJY", "subject": DEMO_COMPANY, "predicate": "catering"}, True),
        ({"type": "SPJY", "subject": DEMO_COMPANY, "predicate": None}, True),
    ):
        sent = {**sent, "purpose": CHECK_PURPOSE}  # every yes/no check states why it asks
        validator(registry, "/components/schemas/CheckRequest").validate(sent)
        response = call(client, verifier, "POST", path, sent)
        body = check(spec, registry, response, path, "POST", status=200)
        assert body["answer"] is answer, sent
        header = jwt.get_unverified_header(body["receipt"])
        validator(registry, "/components/schemas/CheckReceiptHeader").validate(header)
        key = trust.get(b64u_decode(header["kid"]))
        assert key is not None and "receipt" in key.kinds and key.issuer == "city-checks"
        claims = jwt.decode(body["receipt"], key.public_key, algorithms=["ES256"])
        validator(registry, "/components/schemas/CheckReceiptClaims").validate(claims)
        assert claims["jti"] == body["receipt_id"] and claims["answer"] is answer
    assert not validator(registry, "/components/schemas/CheckRequest").is_valid(
        {"purpose": CHECK_PURPOSE, "type": "SPJY", "subject": DEMO_COMPANY, "code": "CC1:"})
    for sent, status, error in (
        ({"type": "CJRZ", "subject": DEMO_COMPANY}, 403, "forbidden"),  # beyond the key's allowance
        ({"type": "LNYD", "code": services.issue_identity_code(elder), "predicate": "age_over_70"}, 403, "forbidden"),
        ({"type": "LNYD", "subject": elder}, 400, "invalid_subject"),
        ({"type": "LNYD", "code": "CC1:abc"}, 422, "code_refused"),
        ({"type": "LNYD", "code": "x", "subject": DEMO_COMPANY}, 400, "invalid_body"),
        ({"type": "LNYD", "subject": DEMO_COMPANY, "predicate": ""}, 400, "invalid_body"),
    ):
        response = call(client, verifier, "POST", path, {**sent, "purpose": CHECK_PURPOSE})
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent


def test_my_certificates_and_show_codes(app: Flask, keys: dict[str, str], spec: dict[str, Any],
                                        registry: Registry) -> None:
    elder, adult = residents_of(app)
    phone = signed_in(app, elder)
    body = check(spec, registry, phone.get("/api/v1/me/certificates"), "/api/v1/me/certificates", "GET", status=200)
    [card] = body["certificates"]
    assert card["type"] == "LNYD" and card["status"] == "valid"
    assert {"name": "age_over_60", "label": "60 or older", "kind": "predicate", "derived_from": "birth_date"} in \
        card["disclosable"]
    assert "Li Wei" not in json.dumps(body)  # labels, never values

    path = "/api/v1/me/certificates/{cert_id}/show"
    url = f"/api/v1/me/certificates/{card['id']}/show"
    body = check(spec, registry, phone.post(url, json={"fields": ["age_over_60", "age_over_60", "name"]}), path,
                 "POST", status=200)
    assert body["fields"] == ["age_over_60", "name"]
    result = vpost(phone, {"code": body["code"]}).get_json()
    assert result["accepted"] is True and result["fields"] == {"age_over_60": True, "name": "Li Wei"}
    others = cert_id_of(app, adult, "CJRZ")
    for target, sent, status, error in (
        (url, {"fields": []}, 400, "no_fields"),
        (url, {"fields": ["shoe_size"]}, 422, "not_disclosable"),
        (url, {"fields": "name"}, 400, "invalid_body"),
        (f"/api/v1/me/certificates/{others}/show", {"fields": ["name"]}, 404, "not_found"),  # someone else's
        ("/api/v1/me/certificates/not-an-id/show", {"fields": ["name"]}, 404, "not_found"),
    ):
        response = phone.post(target, json=sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent
    response = phone.post(url, data="name", content_type="text/plain")
    assert check(spec, registry, response, path, "POST", status=415)["error"] == "unsupported_media_type"
    call(app.test_client(), keys["admin"], "POST", f"/api/v1/admin/certificates/{card['id']}/status",
         {"status": "suspended"})
    body = check(spec, registry, phone.post(url, json={"fields": ["name"]}), path, "POST", status=409)
    assert body["error"] == "certificate_suspended"
    body = check(spec, registry, phone.get("/api/v1/me/certificates"), "/api/v1/me/certificates", "GET", status=200)
    assert body["certificates"][0]["status"] == "suspended"

    with app.extensions["citycode"].db.session() as session:
        get_resident(session, elder).frozen = True
    for response, p, m in ((phone.get("/api/v1/me/certificates"), "/api/v1/me/certificates", "GET"),
                           (phone.post(url, json={"fields": ["name"]}), path, "POST")):
        assert check(spec, registry, response, p, m, status=403)["error"] == "frozen"


def test_the_consented_pull(app: Flask, keys: dict[str, str], spec: dict[str, Any], registry: Registry) -> None:
    services = app.extensions["citycode"]
    client = app.test_client()
    elder, adult = residents_of(app)
    clerk = keys["clerk"]
    items = [{"type": "LNYD", "fields": ["name", "birth_date", "age_over_60"]}]
    path = "/api/v1/consent/requests"

    def ask(pid: str, **extra: Any) -> Any:
        sent = {"code": services.issue_identity_code(pid), "purpose": PURPOSE, "items": items, **extra}
        validator(registry, "/components/schemas/ConsentRequestCreate").validate(sent)
        return call(client, clerk, "POST", "/api/v1/consent/requests", sent)

    response = ask(elder, keep_minutes=20)
    body = check(spec, registry, response, path, "POST", status=201)
    request_id = body["id"]
    assert response.headers["Location"] == f"/api/v1/consent/requests/{request_id}"
    for sent, status, error in (
        ({"code": "CC1:abc", "purpose": PURPOSE, "items": items}, 422, "code_refused"),
        ({"code": services.issue_identity_code(elder), "purpose": "curiosity", "items": items}, 403,
         "purpose_not_allowed"),
        ({"code": services.issue_identity_code(elder), "purpose": PURPOSE,
          "items": [{"type": "ZZXX", "fields": ["a"]}]}, 403, "type_not_allowed"),
        ({"code": services.issue_identity_code(elder), "purpose": PURPOSE,
          "items": [{"type": "LNYD", "fields": ["shoe_size"]}]}, 422, "invalid_body"),
        ({"code": services.issue_identity_code(elder), "purpose": PURPOSE, "items": items, "keep_minutes": 0}, 400,
         "invalid_body"),
    ):
        response = call(client, clerk, "POST", path, sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent

    path = "/api/v1/consent/requests/{request_id}"
    url = f"/api/v1/consent/requests/{request_id}"
    body = check(spec, registry, call(client, clerk, "GET", url), path, "GET", status=200)
    assert body["status"] == "pending" and body["fetch_by"] is None and body["approved"] == []
    for who, target in ((keys["other_clerk"], url), (clerk, "/api/v1/consent/requests/nope"),
                        (clerk, "/api/v1/consent/requests/" + "0" * 24)):
        assert check(spec, registry, call(client, who, "GET", target), path, "GET", status=404)["error"] == "not_found"

    phone = signed_in(app, elder)
    body = check(spec, registry, phone.get("/api/v1/me/consent-requests"), "/api/v1/me/consent-requests", "GET",
                 status=200)
    [shown] = body["requests"]
    assert shown["id"] == request_id and shown["items"][0]["held"] is True and shown["keep_minutes"] == 20
    body = check(spec, registry, signed_in(app, adult).get("/api/v1/me/consent-requests"),
                 "/api/v1/me/consent-requests", "GET", status=200)
    assert body == {"requests": []}

    path = "/api/v1/me/consent-requests/{request_id}"
    approve = {"decision": "approve", "approve": [{"type": "LNYD", "fields": ["name", "age_over_60"]}]}
    for sent, status, error, target in (
        ({"decision": "refuse", "approve": approve["approve"]}, 400, "invalid_body", request_id),
        ({"decision": "maybe"}, 400, "invalid_body", request_id),
        ({"decision": "approve", "approve": [{"type": "LNYD", "fields": ["gender"]}]}, 422, "invalid_body", request_id),
        ({"decision": "approve"}, 404, "not_found", "0" * 24),
    ):
        response = phone.post(f"/api/v1/me/consent-requests/{target}", json=sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent
    response = signed_in(app, adult).post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "refuse"})
    assert check(spec, registry, response, path, "POST", status=404)["error"] == "not_found"  # not theirs
    body = check(spec, registry, phone.post(f"/api/v1/me/consent-requests/{request_id}", json=approve), path, "POST",
                 status=200)
    assert body["status"] == "approved" and body["approved"] == approve["approve"] and body["fetch_by"] is not None
    body = check(spec, registry, phone.post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "refuse"}),
                 path, "POST", status=409)
    assert body["error"] == "not_pending"

    path = "/api/v1/consent/requests/{request_id}/fetch"
    fetch = f"/api/v1/consent/requests/{request_id}/fetch"
    for who, sent, status, error in (
        (keys["other_clerk"], None, 403, "other_clerk"),
        (clerk, {"items": [{"type": "LNYD", "fields": ["birth_date"]}]}, 403, "not_approved"),
        (clerk, {"items": []}, 400, "invalid_body"),
        (clerk, "{", 400, "invalid_json"),
    ):
        response = call(client, who, "POST", fetch, sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent
    response = client.post(fetch, data="items", content_type="text/plain", headers=bearer(clerk))
    assert check(spec, registry, response, path, "POST", status=415)["error"] == "unsupported_media_type"
    body = check(spec, registry, call(client, clerk, "POST", fetch), path, "POST", status=200)
    [released] = body["certificates"]
    assert released["fields"] == ["name", "age_over_60"]
    # The receiving system's side: the SD-JWT, its parts, and the SDK's verification with the trust list.
    issuer_jwt, *disclosures = released["sd_jwt"].split("~")[:-1]
    validator(registry, "/components/schemas/SdJwtHeader").validate(jwt.get_unverified_header(issuer_jwt))
    claims = jwt.decode(issuer_jwt, options={"verify_signature": False})
    validator(registry, "/components/schemas/SdJwtClaims").validate(claims)
    assert claims["exp"] - claims["iat"] == 20 * 60 and len(claims["_sd"]) == 6 + 2  # 3 fields, 3 predicates, 2 decoys
    assert len(disclosures) == 2
    for disclosure in disclosures:
        validator(registry, "/components/schemas/SdJwtDisclosure").validate(json.loads(b64u_decode(disclosure)))
    verified = verify_sd_jwt(released["sd_jwt"], trust_of(client))
    assert verified.issuer == "civil-affairs" and verified.disclosed == {"name": "Li Wei", "age_over_60": True}
    assert verified.claims["cert_id"] == released["cert_id"] == cert_id_of(app, elder, "LNYD")
    body = check(spec, registry, call(client, clerk, "POST", fetch), path, "POST", status=409)
    assert body["error"] == "already_fetched"
    body = check(spec, registry, call(client, clerk, "POST", "/api/v1/consent/requests/nope/fetch"), path, "POST",
                 status=404)
    assert body["error"] == "not_found"
    body = check(spec, registry, call(client, clerk, "GET", url), "/api/v1/consent/requests/{request_id}", "GET",
                 status=200)
    assert body["status"] == "fetched"

    # refused, closed window, frozen identity
    refused = ask(elder).get_json()["id"]
    signed_in(app, elder).post(f"/api/v1/me/consent-requests/{refused}", json={"decision": "refuse"})
    body = check(spec, registry, call(client, clerk, "POST", f"/api/v1/consent/requests/{refused}/fetch"), path,
                 "POST", status=409)
    assert body["error"] == "not_approved"
    late = ask(elder).get_json()["id"]
    signed_in(app, elder).post(f"/api/v1/me/consent-requests/{late}", json={"decision": "approve"})
    with services.db.session() as session:
        session.execute(update(ConsentRequest).where(ConsentRequest.id == late).values(
            fetch_by=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    body = check(spec, registry, call(client, clerk, "POST", f"/api/v1/consent/requests/{late}/fetch"), path, "POST",
                 status=410)
    assert body["error"] == "window_closed"
    lost = ask(elder).get_json()["id"]
    signed_in(app, elder).post(f"/api/v1/me/consent-requests/{lost}", json={"decision": "approve"})
    call(client, keys["admin"], "POST", f"/api/v1/admin/residents/{elder}/freeze")
    body = check(spec, registry, call(client, clerk, "POST", f"/api/v1/consent/requests/{lost}/fetch"), path, "POST",
                 status=403)
    assert body["error"] == "identity_frozen"
    for response, p, m in ((phone.get("/api/v1/me/consent-requests"), "/api/v1/me/consent-requests", "GET"),
                           (phone.get("/api/v1/me/access-log"), "/api/v1/me/access-log", "GET")):
        assert check(spec, registry, response, p, m, status=403)["error"] == "frozen"
    call(client, keys["admin"], "POST", f"/api/v1/admin/residents/{elder}/unfreeze")

    # what the resident reads, and what the auditor reads
    body = check(spec, registry, phone.get("/api/v1/me/access-log?limit=500"), "/api/v1/me/access-log", "GET",
                 status=200)
    actions = [entry["action"] for entry in body["entries"]]
    assert {"request", "approve", "refuse", "fetch"} <= set(actions)
    assert [e["seq"] for e in body["entries"]] == sorted((e["seq"] for e in body["entries"]), reverse=True)
    for query in ("limit=0", "limit=501", "limit=ten", "limit=%EF%BC%91"):
        body = check(spec, registry, phone.get(f"/api/v1/me/access-log?{query}"), "/api/v1/me/access-log", "GET",
                     status=400)
        assert body["error"] == "invalid_query", query


def test_access_log_for_the_auditor(app: Flask, keys: dict[str, str], spec: dict[str, Any],
                                    registry: Registry) -> None:
    services = app.extensions["citycode"]
    client = app.test_client()
    elder, _ = residents_of(app)
    auditor = keys["auditor"]
    for _ in range(3):
        call(client, keys["clerk"], "POST", "/api/v1/consent/requests",
             {"code": services.issue_identity_code(elder), "purpose": PURPOSE,
              "items": [{"type": "LNYD", "fields": ["age_over_60"]}]})
    call(client, keys["verifier"], "POST", "/api/v1/checks", {"type": "SPJY", "subject": DEMO_COMPANY,
                                                              "purpose": CHECK_PURPOSE})
    call(client, keys["clerk"], "POST", "/api/v1/consent/requests", {"code": "CC1:abc", "purpose": PURPOSE,
                                                                     "items": [{"type": "LNYD", "fields": ["name"]}]})
    path = "/api/v1/audit/log"
    body = check(spec, registry, call(client, auditor, "GET", f"{path}?limit=2"), path, "GET", status=200)
    assert [e["seq"] for e in body["entries"]] == [1, 2] and body["next_after"] == 2
    assert body["entries"][0]["prev_hash"] == "0" * 64
    assert body["entries"][0]["hash"] == entry_hash("0" * 64, body["entries"][0])  # the documented definition
    body = check(spec, registry, call(client, auditor, "GET", f"{path}?after=2&limit=1000"), path, "GET", status=200)
    assert body["next_after"] is None and [e["seq"] for e in body["entries"]] == [3, 4, 5]
    assert body["entries"][-1]["subject"] is None and body["entries"][-1]["outcome"].startswith("refused: code")
    assert body["entries"][1]["subject"] == DEMO_COMPANY and body["entries"][1]["action"] == "check"
    for query in ("after=-1", "limit=1001", "after=1234567890123"):
        body = check(spec, registry, call(client, auditor, "GET", f"{path}?{query}"), path, "GET", status=400)
        assert body["error"] == "invalid_query", query

    path = "/api/v1/audit/verify"
    body = check(spec, registry, call(client, auditor, "GET", path), path, "GET", status=200)
    assert body == {"ok": True, "entries": 5, "checkpoints": 0, "first_bad_seq": None, "problem": ""}
    with services.db.session() as session:
        session.execute(update(AccessLogEntry).where(AccessLogEntry.seq == 3).values(outcome="nothing happened"))
    body = check(spec, registry, call(client, auditor, "GET", path), path, "GET", status=200)
    assert body["ok"] is False and body["first_bad_seq"] == 3 and body["problem"] == "entry 3 was altered"
    report = validator(registry, "/components/schemas/AuditReport")
    assert not report.is_valid({**body, "first_bad_seq": None})
    assert not report.is_valid({"ok": True, "entries": 5, "checkpoints": 0, "first_bad_seq": 3, "problem": ""})


def test_access_actions_are_what_the_code_logs(spec: dict[str, Any]) -> None:
    logged: set[str] = set()
    for module in (codeservice.certificates.service, codeservice.consent.service, codeservice.consent.api,
                   codeservice.consent.clerk, codeservice.consent.resident, codeservice.venues.service):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "action":
                        logged |= {c.value for c in ast.walk(keyword.value)
                                   if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    assert {"request", "fetch", "check", "rate_limited"} <= logged
    assert set(spec["components"]["schemas"]["AccessAction"]["enum"]) == logged


def test_queue_tickets(app: Flask, keys: dict[str, str], spec: dict[str, Any], registry: Registry) -> None:
    services = app.extensions["citycode"]
    client = app.test_client()
    elder, adult = residents_of(app)
    path = "/api/v1/queue/tickets"
    numbers = []
    for pid in (elder, adult):
        response = call(client, keys["device"], "POST", path, {"code": services.issue_identity_code(pid),
                                                               "service": "business"})
        numbers.append(check(spec, registry, response, path, "POST", status=201)["number"])
    assert numbers == [1, 2]
    for sent, status, error in (
        ({"code": services.issue_identity_code(elder), "service": "tax"}, 422, "unknown_service"),
        ({"code": "CC1:abc", "service": "business"}, 422, "code_refused"),
        ({"code": services.issue_identity_code(elder)}, 400, "invalid_body"),
    ):
        response = call(client, keys["device"], "POST", path, sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, sent

    path = "/api/v1/queue/next"
    for expected in (1, 2):
        response = call(client, keys["clerk"], "POST", path, {"service": "business"})
        assert check(spec, registry, response, path, "POST", status=200) == {
            "number": expected, "service": "business", "office": DEMO_OFFICE}
    response = call(client, keys["clerk"], "POST", path, {"service": "business"})
    assert response.status_code == 204 and response.get_data() == b""
    assert "content" not in spec["paths"][path]["post"]["responses"]["204"]
    body = check(spec, registry, call(client, keys["clerk"], "POST", path, {"service": ""}), path, "POST", status=400)
    assert body["error"] == "invalid_body"


class BrokenCounter:
    """A state store whose counters (the rate limits) cannot be reached."""

    def count(self, key: str, window: float) -> int:
        raise StateError("state store unreachable: ConnectionError")

    def ping(self) -> bool:
        return False


def test_rate_limit_and_state_store(app: Flask, keys: dict[str, str], spec: dict[str, Any],
                                    registry: Registry) -> None:
    services = app.extensions["citycode"]
    client = app.test_client()
    with services.db.session() as session:
        _, slow = add_api_client(session, "Clerk Slow", "clerk", office=DEMO_OFFICE, rate_per_minute=1)
    path = "/api/v1/queue/next"
    assert call(client, slow, "POST", path, {"service": "business"}).status_code == 204
    body = check(spec, registry, call(client, slow, "POST", path, {"service": "business"}), path, "POST", status=403)
    assert body["error"] == "rate_limited"
    with services.db.session() as session:
        last = session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq.desc())).first()
        assert last.action == "rate_limited" and last.outcome == "refused"
    services.__dict__["state"] = BrokenCounter()
    body = check(spec, registry, call(client, keys["clerk"], "POST", path, {"service": "business"}), path, "POST",
                 status=503)
    assert body["error"] == "state_unavailable"
    path = "/api/v1/consent/requests/{request_id}"
    body = check(spec, registry, call(client, keys["clerk"], "GET", "/api/v1/consent/requests/x"), path, "GET",
                 status=503)
    assert body["error"] == "state_unavailable"
    # the auditor is not rate-limited, so the state store does not matter
    body = check(spec, registry, call(client, keys["auditor"], "GET", "/api/v1/audit/verify"), "/api/v1/audit/verify",
                 "GET", status=200)
    assert body["ok"] is True


# -- certificate results ------------------------------------------------------------------------
CERT_ISSUER = IssuerInfo("test-department", "Test Department", ("cert",), ("TSTX",), "T01")


def show(keyring: Keyring, now: float, *, type_code: str = "TSTX", index: int = 3,
         disclosed: dict[str, Any] | None = None, valid_until: float | None = None) -> str:
    """A show code of a test certificate; its identifier is well-formed (the SDK checks it, and that it names
    *type_code*), so each case is refused for the reason it is about and not as ``malformed``."""
    cert_id = str(CertificateId.build(type_code, "T01", "42", 1))
    return issue_show_code(
        keyring.signer(CERT_ISSUER.id), cert_id=cert_id, type_code=type_code,
        holder="f7pchclco3xqw2yw", valid_from=int(now) - 86400,
        valid_until=int(now + 86400 if valid_until is None else valid_until), status_index=index,
        disclosed={"age_over_60": True, "grade": 3, "name": "Li Wei"} if disclosed is None else disclosed,
        lifetime=60, now=now,
    )


def test_cert_code_through_the_api(app: Flask, client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    """A genuine certificate of an issuer the service holds no status list of: status_unknown, fields shown."""
    services = app.extensions["citycode"]
    services.keyring.add_issuer(CERT_ISSUER)
    code = show(services.keyring, time.time())
    body = check(spec, registry, vpost(client, {"code": code}), "/api/v1/verify", "POST",
                 status=200)
    assert body["reason"] == "status_unknown" and body["kind"] == "cert" and body["subject"] is None
    assert body["cert_type"] == "TSTX" and body["holder"] == "f7pchclco3xqw2yw" and body["status_age"] is None
    assert body["fields"] == {"age_over_60": True, "grade": 3, "name": "Li Wei"}
    body = check(spec, registry, vpost(client, {"code": code, "scene": "bus"}),
                 "/api/v1/verify", "POST", status=200)
    assert body["reason"] == "wrong_kind" and body["cert_id"] is None and body["fields"] is None


def test_every_certificate_reason_matches_the_result_schema(tmp_path: Path, registry: Registry) -> None:
    """Real SDK results (the body of POST /api/v1/verify) of every outcome of a certificate code."""
    now = float(int(time.time()))
    ring = Keyring(tmp_path / "keys")
    ring.initialise([CERT_ISSUER], now - 1000)
    trust = current_trust_list(ring, validity=86400, now=now)
    status = StatusCache()
    signer = ring.signer(CERT_ISSUER.id)
    status.load(sign_status_list(signer, {5: INVALID, 6: SUSPENDED, 7: 3}, size=16, uri="urn:test", ttl=300,
                                 validity=3600, now=now - 100), trust, at=now)
    verifier = Verifier(trust, replay_guard=MemoryReplayGuard(), status=status, clock=lambda: now)
    ahead = StatusCache()
    ahead.load(sign_status_list(signer, {}, size=16, uri="urn:test", ttl=300, validity=3600, now=now + 200), trust,
               at=now)
    elder = Scene("elder", frozenset({"cert"}), single_use=True, cert_rules={"TSTX": {"age_over_60"}},
                  max_status_age=3600)
    strict = Scene("strict", frozenset({"cert"}), single_use=False, max_status_age=60)
    other = Scene("other", frozenset({"cert"}), single_use=False, cert_rules={"ABCD": set()})
    code = show(ring, now)
    early = Verifier(trust, status=ahead, clock=lambda: now).verify(code)  # the issuer's clock is 200 s ahead
    cases: list[tuple[Reason, Result]] = [
        (Reason.OK, verifier.verify(code)),
        (Reason.OK, verifier.verify(code, elder)),
        (Reason.REPLAYED, verifier.verify(code, elder)),
        (Reason.REVOKED, verifier.verify(show(ring, now, index=5))),
        (Reason.SUSPENDED, verifier.verify(show(ring, now, index=6))),
        (Reason.STATUS_UNKNOWN, verifier.verify(show(ring, now, index=7))),  # no meaning for 3
        (Reason.STATUS_UNKNOWN, verifier.verify(show(ring, now, index=99))),  # outside the list
        (Reason.STATUS_UNKNOWN, Verifier(trust, clock=lambda: now).verify(code)),  # no list at all
        (Reason.OK, early),
        (Reason.STATUS_STALE, verifier.verify(code, strict)),
        (Reason.STATUS_STALE, verifier.verify(show(ring, now + 3600), at=now + 3600)),  # the list has expired
        (Reason.CERTIFICATE_EXPIRED, verifier.verify(show(ring, now, valid_until=now - 3600))),
        (Reason.NOT_ENTITLED, verifier.verify(show(ring, now, disclosed={"age_over_60": False}), elder)),
        (Reason.NOT_ENTITLED, verifier.verify(show(ring, now, disclosed={}), elder)),
        (Reason.NOT_ENTITLED, verifier.verify(code, other)),
        (Reason.UNTRUSTED_ISSUER, verifier.verify(show(ring, now, type_code="ZZXX"))),
        (Reason.WRONG_KIND, verifier.verify(code, Scene("id-only", frozenset({"id"}), single_use=False))),
    ]
    schema = validator(registry, "/components/schemas/VerifyResult")
    for expected, result in cases:
        assert result.reason is expected, (expected, result)
        body = json.loads(json.dumps(result.to_dict()))
        schema.validate(body)
        assert body["kind"] == "cert" and body["subject"] is None
    ages = {result.reason: result.status_age for _, result in cases}
    assert ages[Reason.STATUS_STALE] is not None and cases[0][1].status_age == 100
    assert early.status_age == -200  # documented as possibly negative
    assert {Reason.REVOKED, Reason.SUSPENDED, Reason.STATUS_STALE, Reason.STATUS_UNKNOWN, Reason.CERTIFICATE_EXPIRED,
            Reason.NOT_ENTITLED} <= set(ages)


# -- transit: real responses ----------------------------------------------------------------------------------------
def gate_key(app: Flask, operator: str) -> str:
    """A device key of a gate of *operator*."""
    with app.extensions["citycode"].db.session() as session:
        return add_api_client(session, f"Gate of {operator}", "device", operator=operator)[1]


@pytest.fixture
def signing(app: Flask) -> Iterator[None]:
    """Gate records carry real codes signed with this app's keys (tests/test_transit_api.py ``_record``); its
    transit and identity keys are made as of three days ago, so that yesterday's rides have credentials it signed."""
    services = app.extensions["citycode"]
    for issuer in ("city-transit", "city-id"):
        services.keyring.rotate(issuer, grace=0, now=time.time() - 3 * 86400)
    transit_tests._SIGNING["services"] = services
    yield
    transit_tests._SIGNING.clear()


def gate_record(operator: str = OPERATOR, **overrides: Any) -> dict[str, Any]:
    """A record as sdk/gate.py makes it: an accepted ride code at a metro entry, now, carrying the code."""
    return transit_tests._record(operator, **{"gate_id": "g-101-1", **overrides})


def test_the_ride_phone_through_the_api(app: Flask, keys: dict[str, str], spec: dict[str, Any], registry: Registry,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A phone registers a real P-256 key with a proof, its codes are verified online and by a gate, it is renewed,
    removed; the resident's identity frozen; every answer against the document."""
    services = app.extensions["citycode"]
    client = app.test_client()
    with services.db.session() as session:
        pids = [r.pid for r in list_residents(session)]
    student, elder = pids[2], pids[0]
    phone_client = signed_in(app, student)
    path = "/api/v1/me/ride"
    body = check(spec, registry, phone_client.get(path), path, "GET", status=200)
    assert body["card_type"] == "student" and body["devices"] == [] and body["code_validity"] == 60
    account = body["account"]

    devices = "/api/v1/me/ride/devices"
    phone = BrowserPhone()
    response = phone_client.post(devices, json={"public_key": phone.public_raw, "proof": "AA"})
    assert check(spec, registry, response, devices, "POST", status=422)["error"] == "no_challenge"
    response = phone_client.post("/api/v1/me/ride/challenge")
    challenge = check(spec, registry, response, "/api/v1/me/ride/challenge", "POST", status=201)["challenge"]
    for sent, status, error in (  # in this order: the key and the body are checked before the challenge is used up
        ({"public_key": "bm90IGEgcG9pbnQgb24gYW55IGN1cnZlIGF0IGFsbCwgbm90IGF0IGFsbA", "proof": "AA"}, 422,
         "invalid_key"),
        ({"public_key": 42, "proof": "AA"}, 400, "invalid_key"),
        ({"public_key": phone.public_raw}, 400, "invalid_body"),
        ({"public_key": phone.public_raw, "proof": "AA", "label": "x" * 101}, 400, "invalid_body"),
        ({"public_key": phone.public_raw, "proof": "AA", "admin": True}, 400, "invalid_body"),
        ({"public_key": phone.public_raw, "proof": "AA", "label": "a\x00b"}, 400, "invalid_body"),
        ("{", 400, "invalid_json"),
        ({"public_key": phone.public_raw, "proof": BrowserPhone().proof(challenge)}, 422, "bad_proof"),
        ({"public_key": phone.public_raw, "proof": phone.proof(challenge)}, 422, "no_challenge"),  # used up
    ):
        response = call(phone_client, None, "POST", devices, sent)
        assert check(spec, registry, response, devices, "POST", status=status)["error"] == error, sent
    response = phone_client.post(devices, data="{}", content_type="text/plain")
    assert check(spec, registry, response, devices, "POST", status=415)["error"] == "unsupported_media_type"
    validator(registry, "/components/schemas/DeviceRegistration").validate(
        {"public_key": phone.public_raw, "proof": phone.proof(challenge), "label": "my phone"})
    credential = check(spec, registry, phone.register(phone_client), devices, "POST", status=201)
    assert credential["device_id"] == phone.device_id and credential["code_validity"] == 60

    # its codes, online and at an offline gate
    verify = "/api/v1/verify"
    result = check(spec, registry, vpost(client, {"code": phone.code(), "scene": "metro-gate"}), verify,
                   "POST", status=200)
    assert result["accepted"] is True and result["kind"] == "ride" and result["subject"] == account != student
    assert result["card_type"] == "student" and result["fare_limit"] == 2000 and result["issuer"] == "city-transit"
    assert result["credential_id"] == phone.device_id and result["credential_expires_at"] == credential["expires_at"]
    assert type(result["status_age"]) is int and result["cert_id"] is None
    code = phone.code()
    for scene, reason in (("bus", "ok"), ("bus", "replayed"), ("service-window", "wrong_kind")):
        result = check(spec, registry, vpost(client, {"code": code, "scene": scene}), verify, "POST",
                       status=200)
        assert result["reason"] == reason and result["card_type"] == "student", (scene, result)
    bare = "CC1:" + base45.b45encode(b64u_decode(credential["credential"]))
    result = check(spec, registry, vpost(client, {"code": bare}), verify, "POST", status=200)
    assert result["reason"] == "wrong_kind" and result["kind"] == "ridecred" and result["card_type"] is None
    gate = gate_verifier(client)
    schema = validator(registry, "/components/schemas/VerifyResult")
    elderly_only = Scene("elderly-bus", frozenset({"ride"}), single_use=True, card_types=frozenset({"elderly"}))
    later = credential["expires_at"] + 3600.0
    for expected, outcome in ((Reason.OK, gate.verify(phone.code(), SCENES["metro-gate"])),
                              (Reason.CARD_NOT_ACCEPTED, gate.verify(phone.code(), elderly_only)),
                              (Reason.CODE_STALE, gate.verify(phone.code(), at=time.time() + 600)),
                              (Reason.CREDENTIAL_EXPIRED, gate.verify(phone.code(at=later), at=later))):
        assert outcome.reason is expected, outcome
        assert outcome.card_type == "student" and (outcome.status_age is None) == (expected is not Reason.OK)
        schema.validate(json.loads(json.dumps(outcome.to_dict())))

    body = check(spec, registry, phone_client.get(path), path, "GET", status=200)
    assert [(d["id"], d["status"]) for d in body["devices"]] == [(phone.device_id, "valid")]
    kept, third, fourth = BrowserPhone(), BrowserPhone(), BrowserPhone()
    for extra in (kept, third):
        check(spec, registry, extra.register(phone_client), devices, "POST", status=201)
    assert check(spec, registry, fourth.register(phone_client), devices, "POST", status=409)["error"] == \
        "too_many_devices"
    elder_client = signed_in(app, elder)
    assert check(spec, registry, phone.register(elder_client), devices, "POST", status=409)["error"] == "key_in_use"

    # renewal and removal
    renew = "/api/v1/me/ride/devices/{device_id}/credential"
    url = f"/api/v1/me/ride/devices/{phone.device_id}/credential"

    def proof(by: BrowserPhone) -> str:
        """A proof by *by* over a fresh challenge of the session."""
        return by.proof(phone_client.post("/api/v1/me/ride/challenge").get_json()["challenge"])

    body = check(spec, registry, phone_client.post(url, json={"proof": proof(phone)}), renew, "POST", status=200)
    assert body["device_id"] == phone.device_id and body["expires_at"] >= credential["expires_at"]
    response = phone_client.post(url, json={"proof": proof(fourth)})  # another key: uses the challenge up
    assert check(spec, registry, response, renew, "POST", status=422)["error"] == "bad_proof"
    proof(phone)
    for target, sent, status, error in (  # the device is checked before the challenge, the body before both
        ("/api/v1/me/ride/devices/0123456789abcdef/credential", {"proof": "AA"}, 404, "not_found"),
        (url, {"proof": "AA", "label": "x"}, 400, "invalid_body"),
        (url, "[1]", 400, "invalid_body"),
        (url, "{", 400, "invalid_json"),
        (url, {"proof": "AA"}, 422, "bad_proof"),
        (url, {"proof": phone.proof("AAAA")}, 422, "no_challenge"),
    ):
        response = call(phone_client, None, "POST", target, sent)
        assert check(spec, registry, response, renew, "POST", status=status)["error"] == error, sent
    remove = "/api/v1/me/ride/devices/{device_id}"
    for _ in range(2):  # removing a removed phone answers the same
        body = check(spec, registry, phone_client.delete(f"/api/v1/me/ride/devices/{phone.device_id}"), remove,
                     "DELETE", status=200)
        assert body == {"id": phone.device_id, "status": "revoked"}
    response = phone_client.delete("/api/v1/me/ride/devices/0123456789abcdef")
    assert check(spec, registry, response, remove, "DELETE", status=404)["error"] == "not_found"
    response = phone_client.post(url, json={"proof": proof(phone)})
    assert check(spec, registry, response, renew, "POST", status=409)["error"] == "device_revoked"

    # gates learn it from the platform's status list
    status = "/api/v1/status/{department}"
    token = check(spec, registry, client.get("/api/v1/status/city-transit"), status, "GET", status=200)
    claims = jwt.decode(token, options={"verify_signature": False})
    validator(registry, "/components/schemas/StatusListClaims").validate(claims)
    assert claims["iss"] == "city-transit" and claims["sub"].endswith("/api/v1/status/city-transit")
    outcome = gate_verifier(client).verify(phone.code(), SCENES["bus"])
    assert outcome.reason is Reason.REVOKED
    schema.validate(json.loads(json.dumps(outcome.to_dict())))

    # a frozen identity: the resident endpoints refuse, gates refuse every phone (suspended)
    with services.db.session() as session:
        get_resident(session, student).frozen = True
    for method, target, documented in (
        ("GET", path, path), ("POST", "/api/v1/me/ride/challenge", "/api/v1/me/ride/challenge"),
        ("POST", devices, devices), ("POST", url, renew), ("GET", "/api/v1/me/trips", "/api/v1/me/trips"),
        ("DELETE", f"/api/v1/me/ride/devices/{kept.device_id}", remove),
    ):
        response = call(phone_client, None, method, target, {"proof": "AA"} if method == "POST" else None)
        assert check(spec, registry, response, documented, method, status=403)["error"] == "frozen", target
    outcome = gate_verifier(client).verify(kept.code(), SCENES["bus"])
    assert outcome.reason is Reason.SUSPENDED and outcome.status_age is not None
    schema.validate(json.loads(json.dumps(outcome.to_dict())))
    with services.db.session() as session:
        get_resident(session, student).frozen = False

    # the platform cannot register: its status list is full, or no free id after five tries
    settings = services.settings
    services.settings = dataclasses.replace(settings, status_list_size=1)
    try:
        response = BrowserPhone().register(elder_client)
    finally:
        services.settings = settings
    assert check(spec, registry, response, devices, "POST", status=503)["error"] == "status_list_full"
    late = BrowserPhone()
    challenge = elder_client.post("/api/v1/me/ride/challenge").get_json()["challenge"]
    with monkeypatch.context() as patched:
        patched.setattr(codeservice.transit.service.secrets, "token_hex", lambda nbytes=None: kept.device_id)
        response = elder_client.post(devices, json={"public_key": late.public_raw, "proof": late.proof(challenge)})
    assert check(spec, registry, response, devices, "POST", status=503)["error"] == "busy"


@pytest.mark.usefixtures("signing")
def test_gates_through_the_api(app: Flask, keys: dict[str, str], spec: dict[str, Any], registry: Registry) -> None:
    client = app.test_client()
    path = "/api/v1/gate/setup"
    metro, bus, site = keys["gate"], gate_key(app, "qd-bus"), gate_key(app, "laoshan")
    body = check(spec, registry, call(client, metro, "GET", f"{path}?station=101"), path, "GET", status=200)
    assert body == {"operator": OPERATOR, "kind": "metro", "station": "101", "line": None, "fares": {},
                    "daily_capacity": None}
    body = check(spec, registry, call(client, bus, "GET", f"{path}?line=301"), path, "GET", status=200)
    assert body["fares"] == {"adult": 300, "student": 150, "elderly": 0, "disabled": 0}
    body = check(spec, registry, call(client, site, "GET", f"{path}?station=taiqing"), path, "GET", status=200)
    assert body["daily_capacity"] == 20000 and body["fares"]["adult"] == 9000
    for key, query, status, error in (
        (metro, "", 422, "invalid_query"), (metro, "?station=", 400, "invalid_query"),
        (metro, "?station=" + "1" * 65, 400, "invalid_query"), (bus, "?station=101", 422, "invalid_query"),
        (metro, "?station=999", 404, "unknown_station"), (site, "?station=nowhere", 404, "unknown_site"),
        (keys["device"], "?station=101", 403, "forbidden"),  # a kiosk of an office is no gate
    ):
        response = call(client, key, "GET", path + query)
        assert check(spec, registry, response, path, "GET", status=status)["error"] == error, query

    path = "/api/v1/gate/records"
    upload = validator(registry, "/components/schemas/GateRecordUpload")
    with app.extensions["citycode"].db.session() as session:
        resident = list_residents(session)[1].pid
    good = [gate_record(), gate_record(direction="out", station="206"), gate_record(kind="id", account=resident)]
    bad = [gate_record(operator="qd-bus"), gate_record(record_id="short"), gate_record(reason="passback"),
           gate_record(at="yesterday"), gate_record(card_type="vip")]
    for record in good:
        upload.validate(record)
    for record in bad[1:]:  # the operator is the gate's, which the document cannot know
        assert not upload.is_valid(record), record
    body = check(spec, registry, call(client, metro, "POST", path, {"records": good + bad}), path, "POST", status=200)
    assert body["stored"] == [r["record_id"] for r in good] and body["duplicates"] == []
    assert [r["error"].split(":")[0] for r in body["rejected"]] == ["wrong_operator"] + ["invalid_record"] * 4
    body = check(spec, registry, call(client, metro, "POST", path, {"records": good[:2]}), path, "POST", status=200)
    assert body == {"stored": [], "duplicates": [r["record_id"] for r in good[:2]], "rejected": [],
                    "code_duplicates": []}
    copy = {**good[0], "record_id": uuid.uuid4().hex}  # the same code under another record id: never charged twice
    body = check(spec, registry, call(client, metro, "POST", path, {"records": [copy]}), path, "POST", status=200)
    assert body == {"stored": [], "duplicates": [copy["record_id"]], "rejected": [],
                    "code_duplicates": [{"record_id": copy["record_id"], "duplicate_of": good[0]["record_id"]}]}
    body = check(spec, registry, call(client, gate_key(app, OPERATOR), "POST", path, {"records": good[:1]}), path,
                 "POST", status=200)
    assert body["rejected"][0]["error"].startswith("record_id_conflict: ")
    # bodies above the usual 65536 bytes are taken here, up to 1048576
    many = [gate_record(note="x" * 500) for _ in range(300)]
    body = check(spec, registry, call(client, metro, "POST", path, {"records": many}), path, "POST", status=200)
    assert len(body["stored"]) == 300
    for key, sent, status, error in (
        (metro, {"records": 5}, 400, "invalid_body"), (metro, {"records": [], "more": 1}, 400, "invalid_body"),
        (metro, "[]", 400, "invalid_body"), (metro, {"records": [gate_record() for _ in range(501)]}, 400,
                                             "invalid_body"),
        (metro, "{", 400, "invalid_json"), (metro, {"records": [], "pad": "x" * 1024 * 1024}, 413, "body_too_large"),
        (keys["device"], {"records": []}, 403, "forbidden"),
    ):
        response = call(client, key, "POST", path, sent)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, str(sent)[:80]
    response = client.post(path, data="{}", content_type="text/plain", headers=bearer(metro))
    assert check(spec, registry, response, path, "POST", status=415)["error"] == "unsupported_media_type"


@pytest.mark.usefixtures("signing")
def test_operators_records_and_clearing_through_the_api(app: Flask, keys: dict[str, str], spec: dict[str, Any],
                                                         registry: Registry) -> None:
    client = app.test_client()
    admin, staff = keys["admin"], keys["operator"]
    request = validator(registry, "/components/schemas/OperatorRequest")
    for demo in DEMO_OPERATORS:
        request.validate(demo)
    path = "/api/v1/admin/operators"
    sent = {"id": "jiaozhou-bus", "name": "Jiaozhou Bus", "kind": "bus",
            "fares": {"lines": {"801": 200}, "default": 200}, "discounts": {"student": 50}}
    request.validate(sent)
    response = call(client, admin, "POST", path, sent)
    assert check(spec, registry, response, path, "POST", status=201) == sent
    assert response.headers["Location"] == "/api/v1/operators/jiaozhou-bus"
    for wrong, status, error in (
        (sent, 409, "exists"),
        ({**sent, "id": "X-bus"}, 400, "invalid_operator"),
        ({**sent, "id": "x-bus", "name": "  "}, 400, "invalid_operator"),
        ({**sent, "id": "x-bus", "kind": "tram"}, 400, "invalid_fares"),
        ({**sent, "id": "x-bus", "fares": {"lines": {"801": 1.5}, "default": 200}}, 400, "invalid_fares"),
        ({**sent, "id": "x-bus", "fares": {"lines": {}, "default": 200}}, 400, "invalid_fares"),
        ({**sent, "id": "x-bus", "discounts": {"student": 150}}, 400, "invalid_fares"),
        ({**sent, "id": "x-bus", "kind": "metro"}, 400, "invalid_fares"),
        ({**sent, "id": "x-bus", "colour": "red"}, 400, "invalid_body"),
        ({**sent, "id": "x-bus", "name": "a\x00b"}, 400, "invalid_body"),
        ("{", 400, "invalid_json"),
    ):
        response = call(client, admin, "POST", path, wrong)
        assert check(spec, registry, response, path, "POST", status=status)["error"] == error, wrong
        if isinstance(wrong, dict) and error != "exists" and "\x00" not in wrong["name"]:  # NUL: said in words
            assert not request.is_valid(wrong), wrong  # the document refuses what the code refuses
    response = client.post(path, data=json.dumps(sent), content_type="text/plain", headers=bearer(admin))
    assert check(spec, registry, response, path, "POST", status=415)["error"] == "unsupported_media_type"

    path = "/api/v1/operators/{operator_id}"
    body = check(spec, registry, call(client, staff, "GET", f"/api/v1/operators/{OPERATOR}"), path, "GET", status=200)
    assert body["kind"] == "metro" and body["fares"]["max_fare"] == 700
    for operator in ("qd-metro", "qd-bus", "laoshan", "jiaozhou-bus"):
        check(spec, registry, call(client, admin, "GET", f"/api/v1/operators/{operator}"), path, "GET", status=200)
    body = check(spec, registry, call(client, staff, "GET", "/api/v1/operators/qd-bus"), path, "GET", status=403)
    assert body == {"error": "forbidden", "message": "an operator key reaches only its own operator"}
    body = check(spec, registry, call(client, admin, "GET", "/api/v1/operators/nobody"), path, "GET", status=404)
    assert body["error"] == "not_found"

    # a day of records
    yesterday = yesterday_noon()
    day = service_day(yesterday)
    taps = [
        gate_record(account="aaaaaaaaaaaaaaaa", station="101", direction="in", at=yesterday),
        gate_record(account="aaaaaaaaaaaaaaaa", station="206", direction="out", at=yesterday + 900),
        gate_record(account="bbbbbbbbbbbbbbbb", card_type="student", station="102", at=yesterday + 60),
        gate_record(account="dddddddddddddddd", accepted=False, reason="passback", at=yesterday + 30),
    ]
    assert len(call(client, keys["gate"], "POST", "/api/v1/gate/records", {"records": taps}).get_json()["stored"]) == 4
    path = "/api/v1/operators/{operator_id}/records"
    url = f"/api/v1/operators/{OPERATOR}/records?day={day}"
    first = check(spec, registry, call(client, staff, "GET", f"{url}&limit=3"), path, "GET", status=200)
    assert len(first["records"]) == 3 and first["next"] == first["records"][-1]["record_id"]
    rest = check(spec, registry, call(client, admin, "GET", f"{url}&after={first['next']}"), path, "GET", status=200)
    assert rest["next"] is None and len(rest["records"]) == 1
    assert sorted(r["record_id"] for r in first["records"] + rest["records"]) == sorted(r["record_id"] for r in taps)
    for key, target, status, error in (
        (staff, f"/api/v1/operators/{OPERATOR}/records", 400, "invalid_day"),
        (staff, f"/api/v1/operators/{OPERATOR}/records?day=monday", 400, "invalid_day"),
        (staff, f"{url}&limit=0", 400, "invalid_query"), (staff, f"{url}&limit=1001", 400, "invalid_query"),
        (staff, f"{url}&limit=%EF%BC%95", 400, "invalid_query"),
        (staff, f"{url}&after=XYZ", 400, "invalid_query"),
        (staff, f"/api/v1/operators/qd-bus/records?day={day}", 403, "forbidden"),
        (admin, f"/api/v1/operators/nobody/records?day={day}", 404, "not_found"),
    ):
        response = call(client, key, "GET", target)
        assert check(spec, registry, response, path, "GET", status=status)["error"] == error, target

    # clearing, its statement and its trips
    path = "/api/v1/operators/{operator_id}/clearing/{day}"
    csv_path = path + "/trips.csv"
    url = f"/api/v1/operators/{OPERATOR}/clearing/{day}"
    for target, documented in ((url, path), (f"{url}/trips.csv", csv_path)):
        response = call(client, staff, "GET", target)
        assert check(spec, registry, response, documented, "GET", status=404)["error"] == "not_cleared"
    statement = check(spec, registry, call(client, staff, "POST", url), path, "POST", status=200)
    assert statement["by_status"] == {"paired": 1, "unpaired_entry": 1} and statement["records"] == 3
    assert statement["charged_total"] == statement["due_to_operator"] == 400 + 350
    assert check(spec, registry, call(client, admin, "GET", url), path, "GET", status=200) == statement
    response = call(client, staff, "GET", f"{url}/trips.csv")
    text = check(spec, registry, response, csv_path, "GET", status=200)
    assert hashlib.sha256(text.encode()).hexdigest() == statement["digest"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == statement["trips"] and sum(int(r["charged_cents"]) for r in rows) == 750
    assert {r["status"] for r in rows} <= set(spec["components"]["schemas"]["TripStatus"]["enum"])
    today = service_day(time.time())
    for key, method, target, documented, status, error in (
        (staff, "POST", f"/api/v1/operators/{OPERATOR}/clearing/{today}", path, 409, "day_not_over"),
        (staff, "POST", f"/api/v1/operators/{OPERATOR}/clearing/2026-13-01", path, 400, "invalid_day"),
        (staff, "GET", f"/api/v1/operators/{OPERATOR}/clearing/2026-W01-1", path, 400, "invalid_day"),
        (staff, "GET", f"/api/v1/operators/{OPERATOR}/clearing/yesterday/trips.csv", csv_path, 400, "invalid_day"),
        (staff, "POST", f"/api/v1/operators/qd-bus/clearing/{day}", path, 403, "forbidden"),
        (staff, "GET", f"/api/v1/operators/qd-bus/clearing/{day}/trips.csv", csv_path, 403, "forbidden"),
        (admin, "POST", f"/api/v1/operators/nobody/clearing/{day}", path, 404, "not_found"),
        (admin, "GET", f"/api/v1/operators/nobody/clearing/{day}", path, 404, "not_found"),
        (admin, "GET", f"/api/v1/operators/nobody/clearing/{day}/trips.csv", csv_path, 404, "not_found"),
    ):
        response = call(client, key, method, target)
        assert check(spec, registry, response, documented, method, status=status)["error"] == error, target


@pytest.mark.usefixtures("signing")
def test_my_trips_through_the_api(app: Flask, keys: dict[str, str], spec: dict[str, Any], registry: Registry) -> None:
    client = app.test_client()
    with app.extensions["citycode"].db.session() as session:
        pid = list_residents(session)[2].pid
    phone_client = signed_in(app, pid)
    path = "/api/v1/me/trips"
    body = check(spec, registry, phone_client.get(path), path, "GET", status=200)
    assert body["trips"] == [] and body["charged_total"] == 0 and body["account"] is not None
    account = body["account"]
    yesterday = yesterday_noon()
    call(client, gate_key(app, "qd-bus"), "POST", "/api/v1/gate/records", {"records": [
        gate_record("qd-bus", scene="bus", station=None, line="301", direction=None, account=account,
                    card_type="student", at=yesterday),
        gate_record("qd-bus", scene="bus", station=None, line="1", direction=None, kind="id", account=pid,
                    card_type=None, fare_limit=None, credential_id=None, at=yesterday + 60),
    ]})
    call(client, keys["admin"], "POST", f"/api/v1/operators/qd-bus/clearing/{service_day(yesterday)}")
    body = check(spec, registry, phone_client.get(path), path, "GET", status=200)
    assert body["account"] == account and body["charged_total"] == 150 + 100  # the identity code is billed too
    assert [(t["line"], t["status"], t["charged"]) for t in body["trips"]] == [("1", "ride", 100), ("301", "ride", 150)]
