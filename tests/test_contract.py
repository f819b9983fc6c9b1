"""schemathesis against the served document: every operation of /api/v1/openapi.json, all of schemathesis's checks.

The app runs in process (WSGI, no network) on the embedded defaults (SQLite, in-process state) with its demo
data. Each operation is called with the credential its ``security`` names: an API key of that role (for the
operator endpoints, the demo metro's operator key; at /api/v1/gate/ a gate's device key) or the session cookie
of a signed-in demo resident. Generation is bounded (``MAX_EXAMPLES`` a phase and operation) and
deterministic, so a failure found here is found again on the next run.

The checks are all of schemathesis's response checks: no 500, documented status codes, content types, headers
and schemas, a request the document allows is never refused with a 400, one it does not allow is refused
(4xx), an operation that needs a credential refuses the request without it, and every error body is
``{error, message}`` with a documented code. Run alone: ``scripts/test tests/test_contract.py``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import schemathesis
from flask import Flask, Response
from hypothesis import HealthCheck, settings

from codeservice.app import create_app
from codeservice.clients.service import add_api_client
from codeservice.contract import ContractBroken, _number, compiled
from codeservice.demo import DEMO_OFFICE
from codeservice.identity.api import OPENAPI
from codeservice.identity.residents import list_residents
from codeservice.venues.points import add_point, add_service
from codeservice.venues.service import add_venue
from tests.conftest import make_settings

MAX_EXAMPLES = int(os.environ.get("CITYCODE_CONTRACT_EXAMPLES", "25"))  # a phase and operation
OPERATOR = "qd-metro"
ROLE_OF_SCHEME = {"adminKey": "admin", "verifierKey": "verifier", "clerkKey": "clerk", "deviceKey": "device",
                  "auditorKey": "auditor", "operatorKey": "operator", "venueKey": "venue", "pointKey": "point"}

#: A request the document allows may still be refused for what it names or for the state it finds: no such
#: certificate, resident, request or operator (404), a conflict with what is there (409), gone (410), a semantic
#: refusal of a well-formed request (422). Never 400: that is a request the document itself refuses.
ACCEPTED_STATUSES = ["2xx", "401", "403", "404", "409", "410", "422"]

CONFIG = schemathesis.Config.from_dict({
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "with-security-parameters": False,
        # The document's description says it once for every body: text holds no NUL character (PostgreSQL cannot
        # store one), and contract.py refuses it (400 invalid_body) wherever it is.
        "allow-x00": False,
    },
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_STATUSES}},
    "phases": {"stateful": {"enabled": False}},
    "base-url": "http://localhost",
})


@pytest.fixture(scope="module")
def contract_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    app = create_app(make_settings(tmp_path_factory.mktemp("contract")))
    app.testing = True
    return app


@pytest.fixture(scope="module")
def credentials(contract_app: Flask) -> dict[str, dict[str, str]]:
    """The headers for each security scheme, and for the gate's device key."""
    with contract_app.extensions["citycode"].db.session() as session:
        made = {
            "admin": add_api_client(session, "Contract admin", "admin"),
            "verifier": add_api_client(session, "Contract verifier", "verifier", ["LNYD", "SPJY"],
                                       ["age_over_60", "catering"], rate_per_minute=100000),
            "clerk": add_api_client(session, "Contract clerk", "clerk", office=DEMO_OFFICE, rate_per_minute=100000),
            "device": add_api_client(session, "Contract kiosk", "device", office=DEMO_OFFICE, rate_per_minute=100000),
            "auditor": add_api_client(session, "Contract auditor", "auditor"),
            "operator": add_api_client(session, "Contract operator", "operator", operator=OPERATOR),
            "gate": add_api_client(session, "Contract gate", "device", operator=OPERATOR),
        }
        made["venue"] = add_venue(session, "contract-venue", "Contract venue")  # a venue's own key
        add_service(session, "contract-oxygen", "Contract oxygen", 2)
        made["point"] = add_point(session, "contract-oxygen", "contract-point", "Contract point")  # a point's own
        pid = list_residents(session)[0].pid
    headers = {name: {"Authorization": f"Bearer {key}"} for name, (_, key) in made.items()}
    serializer = contract_app.session_interface.get_signing_serializer(contract_app)  # type: ignore[attr-defined]
    cookie = serializer.dumps({"resident": pid})
    headers["resident"] = {"Cookie": f"{contract_app.config['SESSION_COOKIE_NAME']}={cookie}"}
    return headers


#: The document as the app serves it (the file itself: test_openapi.test_served_document_is_the_file). It is read
#: here, at collection, rather than from a fixture app: the cases are made before any fixture exists.
schema = schemathesis.openapi.from_dict(json.loads(OPENAPI.read_text("utf-8")), config=CONFIG)


def headers_for(case: Any, credentials: dict[str, dict[str, str]]) -> dict[str, str]:
    security = [requirement for requirement in case.operation.definition.raw.get("security", []) if requirement]
    if not security:
        return {}
    scheme = next(iter(security[0]))  # a key that is optional is sent: it reaches the whole answer
    if scheme == "residentSession":
        return credentials["resident"]
    if scheme == "deviceKey" and case.path.startswith("/api/v1/gate/"):
        return credentials["gate"]
    return credentials[ROLE_OF_SCHEME[scheme]]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract(case: Any, contract_app: Flask, credentials: dict[str, dict[str, str]]) -> None:
    # The cases were made at collection, before the app: attach it as from_wsgi would have.
    schema.app = case.operation.schema.app = case.operation.app = contract_app
    case.call_and_validate(headers=headers_for(case, credentials))


def test_the_contract_test_reaches_every_operation_of_the_served_document(contract_app: Flask) -> None:
    served = contract_app.test_client().get("/api/v1/openapi.json")
    assert served.status_code == 200 and served.get_json() == schema.raw_schema
    operations = [result.ok().label for result in schema.get_all_operations()]
    documented = [f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items()
                  for method in item if method in {"get", "post", "put", "patch", "delete"}]
    assert sorted(operations) == sorted(documented) and len(operations) == 73


# -- the contract's own behaviour (codeservice/contract.py) --------------------------------------------------
def test_every_api_route_has_its_operation_and_every_operation_its_route(contract_app: Flask) -> None:
    contract = compiled()
    routes = set()
    for rule in contract_app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            template = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routes |= {(method, template) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    assert routes == set(contract.operations)


def test_a_refusal_names_the_member_and_takes_the_code_of_its_place(contract_app: Flask,
                                                                      credentials: dict[str, dict[str, str]]) -> None:
    client = contract_app.test_client()
    admin = credentials["admin"]
    department = {"id": "water-office", "name": "Water Office", "org_code": "11370200004598765R"}
    cases = [
        ({**department, "id": "Water Office"}, "invalid_value", "body/id: "),  # x-error-code of the id's pattern
        ({**department, "id": 7}, "invalid_body", "body/id: "),  # a wrong JSON type: the body's own code
        ({**department, "extra": 1}, "invalid_body", "body: "),  # the outermost problem first
        ({"id": "water-office"}, "invalid_body", "body: "),
        ({**department, "name": "a\x00b"}, "invalid_body", "body/name: text must not contain NUL"),
    ]
    for body, error, where in cases:
        response = client.post("/api/v1/admin/departments", json=body, headers=admin)
        assert response.status_code == 400 and response.json["error"] == error, (body, response.json)
        assert response.json["message"].startswith(where), response.json
    limit = client.get("/api/v1/audit/log?limit=0", headers=credentials["auditor"])
    assert (limit.status_code, limit.json["error"]) == (400, "invalid_query")
    assert limit.json["message"].startswith("query parameter limit: ")
    twice = client.get("/api/v1/audit/log?limit=1&limit=2", headers=credentials["auditor"])
    assert (twice.status_code, twice.json["error"]) == (400, "invalid_query")
    form = client.get("/api/v1/admin/certificates/LNYD-1", headers=admin)  # not the form of an identifier: 400
    assert (form.status_code, form.json["error"]) == (400, "invalid_identifier")
    day = client.get(f"/api/v1/operators/{OPERATOR}/clearing/2026-02-30", headers=credentials["operator"])
    assert (day.status_code, day.json["error"]) == (400, "invalid_day")  # the pattern holds, the date does not


def test_the_credential_is_checked_before_the_body(contract_app: Flask) -> None:
    client = contract_app.test_client()
    response = client.post("/api/v1/admin/departments", data="{", content_type="application/json")
    assert response.status_code == 401 and response.json["error"] == "unauthorised"
    response = client.post("/api/v1/me/ride/devices", json={"public_key": 42})
    assert response.status_code == 401 and response.json["error"] == "unauthorised"


def test_a_whole_number_is_one_however_it_is_written(contract_app: Flask,
                                                      credentials: dict[str, dict[str, str]]) -> None:
    response = contract_app.test_client().get("/api/v1/audit/log?limit=2", headers=credentials["auditor"])
    assert response.status_code == 200
    contract = compiled()
    operation = contract.operations[("POST", "/api/v1/admin/cert-types")]
    assert operation.body is not None
    body = {"code": "JZZB", "name": "Permit", "department": "civil-affairs", "holder_kind": "resident",
            "fields": [{"name": "name"}], "validity_days": 365}
    assert operation.body.refusal({**body, "validity_days": json.loads("365.0", parse_float=_number)}, "body") is None
    refused = operation.body.refusal({**body, "validity_days": 365.5}, "body")
    assert refused is not None and refused.reason == "invalid_body"


def test_a_response_the_document_does_not_allow_is_caught_when_testing(contract_app: Flask) -> None:
    operation = compiled().operations[("GET", "/api/v1/health")]
    with pytest.raises(ContractBroken, match="status 418 is not documented"):
        operation.check_response(Response("{}", status=418, mimetype="application/json"))
    with pytest.raises(ContractBroken, match="media type"):
        operation.check_response(Response("ok", status=200, mimetype="text/plain"))
    with pytest.raises(ContractBroken, match="response"):
        operation.check_response(Response('{"status": "fine"}', status=200, mimetype="application/json"))
    operation.check_response(Response('{"status": "ok", "database": true, "state": true}', status=200,
                                      mimetype="application/json"))
