"""A resident shows a certificate (亮证): the list, the show code and its pages, through the Flask test client,
on SQLite and on PostgreSQL. Show codes are read back with the offline SDK, as a gate would, from the trust list,
the trust anchor and the department's status list served by the same API."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from codeservice.certificates.models import Certificate
from codeservice.certificates.service import add_cert_type, certificates_of, issue_certificate, set_status
from codeservice.identity.residents import get_resident, list_residents
from sdk import PREFIX, TrustList, Verifier, base45, load_anchor
from sdk.certid import CertificateId
from sdk.statuslist import StatusCache
from tests.conftest import in_english
from tests.test_api import sign_in
from verifiers.scenes import SCENES

ELDER_BIRTH = "1952-03-14"  # the first demo resident (Li Wei), who holds the elderly card LNYD
ELDER_GENDER = "male"


def services(app):
    return app.extensions["citycode"]


def residents(app) -> list[str]:
    with services(app).db.session() as s:
        return [r.pid for r in list_residents(s)]


def cert_of(app, pid: str, type_code: str) -> str:
    with services(app).db.session() as s:
        return next(c.id for c in certificates_of(s, pid) if c.type_code == type_code)


def show(client, cert_id: str, fields) -> object:
    return client.post(
        f"/api/v1/me/certificates/{cert_id}/show", data=json.dumps({"fields": fields}), content_type="application/json"
    )


def gate(client, issuer: str) -> Verifier:
    """An offline verifier with the service's trust list and the issuer's status list, fetched once."""
    trust = TrustList.load(
        client.get("/api/v1/trust-list").get_data(as_text=True), load_anchor(client.get("/api/v1/trust-anchor").data)
    )
    status = StatusCache()
    response = client.get(f"/api/v1/status/{issuer}")
    assert response.status_code == 200
    status.load(response.get_data(as_text=True), trust)
    return Verifier(trust, leeway=30, status=status)


def code_bytes(code: str) -> bytes:
    assert code.startswith(PREFIX)
    return base45.b45decode(code[len(PREFIX) :])


# -- authentication -----------------------------------------------------------------------------
def test_without_a_session_the_api_answers_401_json_and_the_pages_redirect(app, client):
    listed = client.get("/api/v1/me/certificates")
    assert listed.status_code == 401 and listed.json["error"] == "unauthorised"
    cert_id = cert_of(app, residents(app)[0], "LNYD")
    shown = show(client, cert_id, ["name"])
    assert shown.status_code == 401 and shown.json["error"] == "unauthorised"
    for path in ("/certificates", f"/certificates/{cert_id}"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/signin")


def test_frozen_resident_cannot_list_or_show(app, client):
    pid = residents(app)[0]
    sign_in(client, pid)
    with services(app).db.session() as s:
        get_resident(s, pid).frozen = True
    assert client.get("/api/v1/me/certificates").status_code == 403
    response = show(client, cert_of(app, pid, "LNYD"), ["name"])
    assert response.status_code == 403 and response.json["error"] == "frozen"


# -- the list -----------------------------------------------------------------------------------
def test_list_names_only_the_residents_own_certificates_with_labels_and_no_values(app, client):
    elder, adult = residents(app)[:2]
    sign_in(client, elder)
    response = client.get("/api/v1/me/certificates")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    (cert,) = response.json["certificates"]
    assert cert["id"] == cert_of(app, elder, "LNYD")
    CertificateId.parse(cert["id"])
    assert cert["type"] == "LNYD" and cert["type_name"].startswith("Elderly preferential card")
    assert (cert["issuer"], cert["issuer_name"]) == ("civil-affairs", "City Civil Affairs Bureau")
    assert dt.date.fromisoformat(cert["valid_from"]) < dt.date.fromisoformat(cert["valid_until"])
    assert cert["status"] == "valid"
    items = {item["name"]: item for item in cert["disclosable"]}
    assert set(items) == {"name", "birth_date", "gender", "age_over_60", "age_over_65", "age_over_70"}
    assert items["name"] == {"name": "name", "label": "Name", "kind": "field"}
    assert items["age_over_60"]["kind"] == "predicate" and items["age_over_60"]["label"] == "60 or older"
    assert items["age_over_60"]["derived_from"] == "birth_date"
    text = response.get_data(as_text=True)
    assert ELDER_BIRTH not in text and f'"{ELDER_GENDER}"' not in text and "Li Wei" not in text

    other = app.test_client()
    sign_in(other, adult)
    (theirs,) = other.get("/api/v1/me/certificates").json["certificates"]
    assert theirs["type"] == "CJRZ" and theirs["id"] != cert["id"]


def test_a_resident_without_certificates_gets_an_empty_list(app, client):
    sign_in(client, residents(app)[2])
    assert client.get("/api/v1/me/certificates").json == {"certificates": []}
    assert "no electronic certificates" in client.get("/certificates").get_data(as_text=True)


# -- showing ------------------------------------------------------------------------------------
def test_show_code_carries_exactly_the_chosen_fields_and_the_sdk_accepts_it(app, client):
    elder = residents(app)[0]
    cert_id = cert_of(app, elder, "LNYD")
    sign_in(client, elder)
    response = show(client, cert_id, ["name", "age_over_60"])
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    lifetime = services(app).settings.code_lifetime
    assert body["expires_at"] - body["issued_at"] == lifetime and 0 < body["refresh_in"] < lifetime
    assert body["svg"].startswith("data:image/svg+xml;base64,")
    assert body["fields"] == ["name", "age_over_60"]

    verifier = gate(client, "civil-affairs")
    result = verifier.verify(body["code"])
    assert result.accepted, result.to_dict()
    assert result.kind == "cert" and result.cert_type == "LNYD" and result.issuer == "civil-affairs"
    assert result.cert_id == cert_id and result.holder == elder
    assert result.fields == {"name": "Li Wei", "age_over_60": True}
    assert result.expires_at - result.issued_at == lifetime

    scenic = verifier.verify(body["code"], SCENES["scenic-elderly"])
    assert scenic.accepted, scenic.to_dict()

    # Nothing of what was left out travels in the code, in any form the holder's data could take.
    raw = code_bytes(body["code"])
    for secret in (
        ELDER_BIRTH.encode(),
        ELDER_BIRTH.replace("-", "").encode(),
        b"birth_date",
        ELDER_GENDER.encode(),
        b"gender",
        b"age_over_65",
        b"age_over_70",
    ):
        assert secret not in raw, secret


def test_a_show_code_with_the_birth_date_carries_it_and_a_predicate_alone_satisfies_the_scene(app, client):
    elder = residents(app)[0]
    cert_id = cert_of(app, elder, "LNYD")
    sign_in(client, elder)
    verifier = gate(client, "civil-affairs")
    dated = show(client, cert_id, ["birth_date"]).json
    assert verifier.verify(dated["code"]).fields == {"birth_date": ELDER_BIRTH}
    assert ELDER_BIRTH.encode() in code_bytes(dated["code"])  # the search above would find it
    # The scenic site wants "60 or older" shown: a code with the name only is not enough.
    name_only = show(client, cert_id, ["name"]).json
    refused = verifier.verify(name_only["code"], SCENES["scenic-elderly"])
    assert not refused.accepted and refused.reason.value == "not_entitled"
    # Each code is new: two shows give two codes.
    again = show(client, cert_id, ["name"]).json
    assert again["code"] != name_only["code"]


def test_someone_elses_certificate_is_answered_like_one_that_does_not_exist(app, client):
    elder, adult = residents(app)[:2]
    elder_cert = cert_of(app, elder, "LNYD")
    sign_in(client, adult)
    theirs = show(client, elder_cert, ["name"])
    made_up = show(
        client, str(CertificateId.build("LNYD", CertificateId.parse(elder_cert).issuer_code, "99999999", 1)), ["name"]
    )
    malformed = show(client, "1.2.156.3005.2.LNYD.nonsense", ["name"])
    for response in (theirs, made_up, malformed):
        assert response.status_code == 404
    assert theirs.json == made_up.json == malformed.json
    assert theirs.json["error"] == "not_found"
    assert client.get(f"/certificates/{elder_cert}").status_code == 404
    # Not even a refusal to disclose gives it away.
    assert show(client, elder_cert, ["no_such_field"]).json == theirs.json


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ([], 400, "no_fields"),
        (["salary"], 422, "not_disclosable"),  # of the documented form, but no field of this type
        (["name", "age_over_61"], 422, "not_disclosable"),
        ("name", 400, "invalid_body"),
        ([1], 400, "invalid_body"),
        (None, 400, "invalid_body"),
    ],
)
def test_bad_choices_get_400_or_422_with_a_reason(app, client, fields, status, error):
    elder = residents(app)[0]
    sign_in(client, elder)
    response = show(client, cert_of(app, elder, "LNYD"), fields)
    assert response.status_code == status
    assert response.json["error"] == error and response.json["message"]


def test_malformed_bodies_get_4xx(app, client):
    elder = residents(app)[0]
    sign_in(client, elder)
    url = f"/api/v1/me/certificates/{cert_of(app, elder, 'LNYD')}/show"
    assert client.post(url, data="name", content_type="text/plain").status_code == 415
    assert client.post(url, data="{", content_type="application/json").json["error"] == "invalid_json"
    extra = client.post(url, data=json.dumps({"fields": ["name"], "x": 1}), content_type="application/json")
    assert extra.status_code == 400 and extra.json["error"] == "invalid_body"
    assert client.get(url).status_code == 405


def test_a_field_the_type_keeps_undisclosable_is_neither_offered_nor_shown(app, client):
    elder = residents(app)[0]
    svc = services(app)
    with svc.db.session() as s:
        add_cert_type(
            s,
            svc.keyring,
            code="MZKT",
            name="Civil affairs test card",
            department="civil-affairs",
            holder_kind="resident",
            fields=[
                {"name": "name", "label": "Name", "type": "text"},
                {"name": "id_number", "label": "ID number", "type": "text", "disclosable": False},
            ],
        )
        cert_id = issue_certificate(
            s,
            type_code="MZKT",
            holder=elder,
            status_list_size=svc.settings.status_list_size,
            fields={"name": "Li Wei", "id_number": "370202195203140011"},
        ).id
    sign_in(client, elder)
    listed = {c["id"]: c for c in client.get("/api/v1/me/certificates").json["certificates"]}
    assert [i["name"] for i in listed[cert_id]["disclosable"]] == ["name"]
    page = client.get(f"/certificates/{cert_id}").get_data(as_text=True)
    assert 'value="name"' in page and "id_number" not in page
    response = show(client, cert_id, ["name", "id_number"])
    assert response.status_code == 422 and response.json["error"] == "not_disclosable"
    assert "id_number" in response.json["message"]


def test_suspended_and_revoked_certificates_cannot_be_shown_and_reinstated_can(app, client):
    elder = residents(app)[0]
    cert_id = cert_of(app, elder, "LNYD")
    sign_in(client, elder)
    svc = services(app)

    def set_to(status: str) -> None:
        with svc.db.session() as s:
            set_status(s, cert_id, status)

    set_to("suspended")
    response = show(client, cert_id, ["age_over_60"])
    assert response.status_code == 409 and response.json["error"] == "certificate_suspended"
    assert client.get("/api/v1/me/certificates").json["certificates"][0]["status"] == "suspended"
    page = client.get(f"/certificates/{cert_id}").get_data(as_text=True)
    assert "suspended" in page and 'id="show-form"' not in page

    set_to("valid")
    assert show(client, cert_id, ["age_over_60"]).status_code == 200

    set_to("revoked")
    response = show(client, cert_id, ["age_over_60"])
    assert response.status_code == 409 and response.json["error"] == "certificate_revoked"


def test_a_certificate_past_its_validity_cannot_be_shown(app, client):
    elder = residents(app)[0]
    cert_id = cert_of(app, elder, "LNYD")
    with services(app).db.session() as s:
        cert = s.get(Certificate, cert_id)
        cert.valid_from, cert.valid_until = dt.date(2000, 1, 1), dt.date(2010, 1, 1)
    sign_in(client, elder)
    response = show(client, cert_id, ["name"])
    assert response.status_code == 409 and response.json["error"] == "certificate_expired"
    assert client.get("/api/v1/me/certificates").json["certificates"][0]["status"] == "expired"


# -- pages --------------------------------------------------------------------------------------
def test_pages_list_the_certificates_and_offer_every_disclosable_item(app, client):
    elder = residents(app)[0]
    cert_id = cert_of(app, elder, "LNYD")
    sign_in(client, elder)
    assert 'href="/certificates"' in client.get("/code").get_data(as_text=True)

    listing = client.get("/certificates")
    assert listing.status_code == 200 and listing.headers["Cache-Control"] == "no-store"
    text = listing.get_data(as_text=True)
    assert f'href="/certificates/{cert_id}"' in text
    assert "Elderly preferential card" in text and "City Civil Affairs Bureau" in text and "valid" in text

    page = client.get(f"/certificates/{cert_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    boxes = re.findall(r'<input type="checkbox" name="fields" value="([a-z0-9_]+)"', html)
    assert boxes == ["name", "birth_date", "age_over_60", "age_over_65", "age_over_70", "gender"]
    assert "stays hidden" in html  # the hint beside the birth date
    assert ELDER_BIRTH not in html
    assert '<script src="/static/cert.js"></script>' in html and "<script>" not in html
    assert f'data-show-url="/api/v1/me/certificates/{cert_id}/show"' in html
    assert client.get("/static/cert.js").status_code == 200


@pytest.fixture
def app(web_app):  # type: ignore[no-untyped-def]
    return in_english(web_app)  # these tests read the pages' English wording
