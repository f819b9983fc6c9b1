"""codeservice/openapi.json: a valid OpenAPI 3.1 document that describes the API as it really is.

The routes and methods of the Flask app, the reason and kind enumerations of the SDK, the fields of
``Result.to_dict()``, the error codes the code can produce, the document's own examples, real responses of
every endpoint and real SDK results of every certificate reason are checked against the document.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import re
import time
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

import codeservice.api
import codeservice.app
from codeservice.app import create_app
from codeservice.config import Settings
from codeservice.residents import get_resident, list_residents
from codeservice.services import Services
from codeservice.state import StateError
from issuers.certificates import issue_show_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from issuers.trustlist import current_trust_list
from sdk import KINDS, MemoryReplayGuard, Reason, Result, Scene, Verifier, base45
from sdk.statuslist import INVALID, SUSPENDED, StatusCache
from tests.conftest import make_settings

SPEC_PATH = Path(codeservice.api.__file__).parent / "openapi.json"
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
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            yield path, set(rule.methods or ()) - AUTOMATIC_METHODS


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


def _error_codes_in_code() -> set[str]:
    """Every ``error`` value the API can put in an error body, read from the code."""
    codes: set[str] = set()
    tree = ast.parse(inspect.getsource(codeservice.api))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "BadRequest":
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str)
            codes.add(first.value)
    codes |= {codeservice.app._error_code(status) for status in range(400, 600)}
    app_tree = ast.parse(inspect.getsource(codeservice.app))
    for node in ast.walk(app_tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "jsonify":
            for keyword in node.keywords:
                if keyword.arg == "error" and isinstance(keyword.value, ast.Constant):
                    codes.add(keyword.value.value)
    return codes


def test_error_code_enum_is_what_the_code_returns(spec: dict[str, Any]) -> None:
    found = _error_codes_in_code()
    assert {"invalid_json", "invalid_body", "unknown_scene", "unauthorised", "frozen", "internal_error"} <= found
    assert set(spec["components"]["schemas"]["ErrorCode"]["enum"]) == found


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
    error = validator(registry, "/components/schemas/Error")
    error.validate({"error": "invalid_json", "message": "x"})
    assert not error.is_valid({"error": "teapot", "message": "x"})
    assert not error.is_valid({"error": "invalid_json"})


# -- real responses ---------------------------------------------------------------------------------
def test_verify_responses(app: Flask, client: FlaskClient, spec: dict[str, Any], registry: Registry) -> None:
    services = app.extensions["citycode"]
    code = services.issue_identity_code(demo_pid(app))

    body = check(spec, registry, client.post("/api/v1/verify", json={"code": code}), "/api/v1/verify", "POST",
                 status=200)
    assert body["accepted"] is True and body["scene"] is None

    body = check(spec, registry, client.post("/api/v1/verify", json={"code": code, "scene": "bus"}),
                 "/api/v1/verify", "POST", status=200)
    assert body["accepted"] is True and body["scene"] == "bus"
    body = check(spec, registry, client.post("/api/v1/verify", json={"code": code, "scene": "bus"}),
                 "/api/v1/verify", "POST", status=200)
    assert body["reason"] == "replayed"

    raw = bytearray(base45.b45decode(code[4:]))
    raw[-1] ^= 0x01
    tampered = "CC1:" + base45.b45encode(bytes(raw))
    body = check(spec, registry, client.post("/api/v1/verify", json={"code": tampered, "scene": None}),
                 "/api/v1/verify", "POST", status=200)
    assert body["reason"] == "bad_signature" and body["kid"] and body["subject"] is None

    for text, reason in (("https://example.org/", "not_a_citycode"), ("CC1:abc", "malformed")):
        body = check(spec, registry, client.post("/api/v1/verify", json={"code": text}), "/api/v1/verify", "POST",
                     status=200)
        assert body["reason"] == reason

    future = services.issue_identity_code(demo_pid(app), now=time.time() + 3600)
    body = check(spec, registry, client.post("/api/v1/verify", json={"code": future}), "/api/v1/verify", "POST",
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
        ('{"code": "CC1:", "scene": "tram"}', "application/json", 400, "unknown_scene"),
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
    result = client.post("/api/v1/verify", json={"code": body_code}).get_json()
    assert result["accepted"] is True and result["subject"] == pid

    services = app.extensions["citycode"]
    with services.db.session() as db:
        get_resident(db, pid).frozen = True
    body = check(spec, registry, client.get("/api/v1/me/code"), "/api/v1/me/code", "GET", status=403)
    assert body["error"] == "frozen"
    # online, the code made before the freeze is refused at once
    result = check(spec, registry, client.post("/api/v1/verify", json={"code": body_code}), "/api/v1/verify",
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


# -- certificate results ------------------------------------------------------------------------
CERT_ISSUER = IssuerInfo("test-department", "Test Department", ("cert",), ("TSTX",))


def show(keyring: Keyring, now: float, *, type_code: str = "TSTX", index: int = 3,
         disclosed: dict[str, Any] | None = None, valid_until: float | None = None) -> str:
    return issue_show_code(
        keyring.signer(CERT_ISSUER.id), cert_id="1.2.156.3005.2.TSTX.T01.42.1.X", type_code=type_code,
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
    body = check(spec, registry, client.post("/api/v1/verify", json={"code": code}), "/api/v1/verify", "POST",
                 status=200)
    assert body["reason"] == "status_unknown" and body["kind"] == "cert" and body["subject"] is None
    assert body["cert_type"] == "TSTX" and body["holder"] == "f7pchclco3xqw2yw" and body["status_age"] is None
    assert body["fields"] == {"age_over_60": True, "grade": 3, "name": "Li Wei"}
    body = check(spec, registry, client.post("/api/v1/verify", json={"code": code, "scene": "bus"}),
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
