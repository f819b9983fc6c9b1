"""Certificate show codes checked as a gate checks them, against the service on every storage and state
combination (SQLite/PostgreSQL x in-process/Redis, the ``app`` fixture): keys made by the service, the trust
list from /api/v1/trust-list, status lists from /api/v1/status/<department>."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from sqlalchemy import select

from codeservice.certificates.models import Certificate
from codeservice.certificates.service import _epoch, certificates_of, show_code
from codeservice.demo import DEMO_COMPANY, DEPARTMENTS
from codeservice.identity.residents import list_residents
from issuers.certificates import issue_show_code
from sdk import Reason, TrustList, Verifier, load_anchor
from sdk.certid import CertificateId
from sdk.claims import CERT_FIELDS, CLAIM_CERT
from sdk.statuslist import StatusCache
from tests import forge
from tests.conftest import as_verifier
from verifiers.scenes import SCENES

ORG = {dept: org for dept, _name, org in DEPARTMENTS}
INSPECTION = SCENES["inspection"]


@pytest.fixture
def services(app):  # type: ignore[no-untyped-def]
    return app.extensions["citycode"]


def gate(client) -> Verifier:  # type: ignore[no-untyped-def]
    """An offline gate's verifier after a sync: the trust list and every department's status list."""
    anchor = load_anchor(client.get("/api/v1/trust-anchor").data)
    trust = TrustList.load(client.get("/api/v1/trust-list").get_data(as_text=True), anchor)
    cache = StatusCache()
    for department, _name, _org in DEPARTMENTS:
        response = client.get(f"/api/v1/status/{department}")
        assert response.status_code == 200, response.data
        cache.load(response.get_data(as_text=True), trust)
    return Verifier(trust, status=cache)


def elderly_card(services) -> Certificate:  # type: ignore[no-untyped-def]
    with services.db.session() as s:
        return next(c for c in certificates_of(s, list_residents(s)[0].pid) if c.type_code == "LNYD")


def licence(services) -> Certificate:  # type: ignore[no-untyped-def]
    with services.db.session() as s:
        return next(c for c in certificates_of(s, DEMO_COMPANY) if c.type_code == "YYZZ")


def shown(services, cert: Certificate, names: list[str]) -> str:  # type: ignore[no-untyped-def]
    with services.db.session() as s:
        return show_code(s, services.keyring, s.get(Certificate, cert.id), names, lifetime=60)


def signed(services, signer: str, cert: Certificate, **changes: Any) -> str:  # type: ignore[no-untyped-def]
    """A show code of *cert* signed with *signer*'s real key, its metadata changed by *changes*."""
    claims: dict[str, Any] = dict(
        cert_id=cert.id, type_code=cert.type_code, holder=cert.holder, valid_from=_epoch(cert.valid_from),
        valid_until=_epoch(cert.valid_until, end=True), status_index=cert.status_index,
        disclosed={"age_over_60": True}, lifetime=60)
    claims.update(changes)
    return issue_show_code(services.keyring.signer(signer), **claims)


def verify_online(client, code: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/verify", json={"code": code, "scene": "inspection"},
                           headers=as_verifier(client.application))
    assert response.status_code == 200, response.data
    return response.json  # type: ignore[no-any-return]


# -- the issuer named in the identifier --------------------------------------------------------------
def test_trust_list_publishes_each_departments_org_code(client):
    keys = gate(client).trust.keys.values()
    assert {k.issuer: k.org_code for k in keys if "cert" in k.kinds} == ORG
    assert all(k.org_code is None for k in keys if "cert" not in k.kinds)


def test_identifier_naming_another_departments_org_code_is_untrusted_issuer(services, client):
    """Civil affairs signs an elderly card whose identifier says market regulation issued it."""
    card = elderly_card(services)
    foreign = str(CertificateId.build("LNYD", ORG["market-regulation"], "00000001", 1))
    forged = signed(services, "civil-affairs", card, cert_id=foreign)
    genuine = signed(services, "civil-affairs", card)
    offline = gate(client)
    assert offline.verify(genuine, INSPECTION).accepted
    result = offline.verify(forged, INSPECTION)
    assert result.reason is Reason.UNTRUSTED_ISSUER and result.issuer == "civil-affairs"
    assert ORG["market-regulation"] in result.detail
    online = verify_online(client, forged)
    assert online["reason"] == "untrusted_issuer" and online["cert_id"] == foreign
    assert verify_online(client, genuine)["reason"] == "ok"


def test_a_keyring_without_org_codes_heals_on_initialise(services, client):
    """A data directory made before the trust list carried org codes: its gates refuse every certificate
    (fail closed) until 'citycode init' (Services.initialise) records them."""
    index_path = Path(services.keyring.path) / "index.json"
    index = json.loads(index_path.read_text())
    for meta in index["issuers"].values():
        meta.pop("org_code", None)
    index_path.write_text(json.dumps(index))
    card = elderly_card(services)
    code = shown(services, card, ["age_over_60"])
    old = gate(client)
    assert all(k.org_code is None for k in old.trust.keys.values())
    assert old.verify(code, INSPECTION).reason is Reason.UNTRUSTED_ISSUER

    services.initialise()
    healed = gate(client)
    assert {k.issuer: k.org_code for k in healed.trust.keys.values() if "cert" in k.kinds} == ORG
    assert healed.verify(code, INSPECTION).accepted
    assert verify_online(client, code)["reason"] == "ok"


# -- a disclosed field altered, another department's key, an index outside the list ------------------
def one_character_changed(code: str, field: str) -> str:
    """*code* with the last character of the disclosed *field* changed, signature kept."""
    protected, _unprotected, payload, signature = cbor2.loads(forge.raw_of(code)).value
    claims = cbor2.loads(payload)
    value = claims[CLAIM_CERT][CERT_FIELDS][field]
    claims[CLAIM_CERT][CERT_FIELDS][field] = value[:-1] + ("X" if value[-1] != "X" else "Y")
    altered = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(claims, canonical=True), signature]))
    return forge.text_of(altered)


@pytest.mark.parametrize(("which", "field"), [("elderly", "name"), ("licence", "legal_representative")])
def test_a_disclosed_field_altered_by_one_character_is_bad_signature(services, client, which, field):
    cert = elderly_card(services) if which == "elderly" else licence(services)
    code = shown(services, cert, [field])
    offline = gate(client)
    genuine = offline.verify(code, INSPECTION)
    assert genuine.accepted, genuine.detail
    altered = one_character_changed(code, field)
    assert altered != code
    result = offline.verify(altered, INSPECTION)
    assert result.reason is Reason.BAD_SIGNATURE and not result.accepted and result.fields is None
    assert verify_online(client, altered)["reason"] == "bad_signature"


@pytest.mark.parametrize(("signer", "which"), [("market-regulation", "elderly"), ("civil-affairs", "licence"),
                                               ("disabled-federation", "elderly")])
def test_a_code_of_one_departments_type_signed_by_another_departments_key_is_untrusted_issuer(
        services, client, signer, which):
    cert = elderly_card(services) if which == "elderly" else licence(services)
    forged = signed(services, signer, cert, disclosed={})
    result = gate(client).verify(forged, INSPECTION)
    assert result.reason is Reason.UNTRUSTED_ISSUER and result.issuer == signer
    assert f"does not issue {cert.type_code}" in result.detail
    assert verify_online(client, forged)["reason"] == "untrusted_issuer"


def test_a_status_index_outside_the_departments_list_is_status_unknown(services, client):
    offline = gate(client)
    held = offline.status.get("civil-affairs")
    assert held is not None and held.size == services.settings.status_list_size
    card = elderly_card(services)
    assert offline.verify(signed(services, "civil-affairs", card, status_index=held.size - 1), INSPECTION).accepted
    for index in (held.size, held.size + 1, 2**40):
        result = offline.verify(signed(services, "civil-affairs", card, status_index=index), INSPECTION)
        assert result.reason is Reason.STATUS_UNKNOWN and "outside" in result.detail, (index, result.detail)
        assert result.status_age is not None  # the list was there: the index is what is wrong


# -- CITYCODE_STATUS_LIST_SIZE lowered below an allocated index ---------------------------------------
def test_a_lowered_list_size_still_covers_every_allocated_index(app, tmp_path, database_url):
    """Restarted with CITYCODE_STATUS_LIST_SIZE=1024 after indices up to 70000 were allocated: each list
    grows to the highest index + 1, rounded up to a multiple of 1024, instead of failing (500) or leaving a
    certificate outside its list."""
    from codeservice.app import create_app
    from sdk.statuslist import INVALID, VALID
    from tests.conftest import make_settings

    services = app.extensions["citycode"]
    card = elderly_card(services)
    with services.db.session() as s:
        s.get(Certificate, card.id).status_index = 70000
        disability = s.scalars(select(Certificate).where(Certificate.type_code == "CJRZ")).one()
        disability.status_index = 10
    home = Path(services.settings.home)
    lowered = create_app(make_settings(home, database_url, None, status_list_size=1024))
    try:
        client = lowered.test_client()
        code = shown(services, card, ["age_over_60"])
        offline = gate(client)  # every department's list answers 200
        held = offline.status.get("civil-affairs")
        assert held is not None and held.size == 70656 == 69 * 1024 and held.status(70000) == VALID
        assert offline.verify(code, INSPECTION).accepted
        assert offline.status.get("disabled-federation").size == 1024  # every index fits: the setting holds

        with services.db.session() as s:
            s.get(Certificate, card.id).status = "revoked"
        response = client.get("/api/v1/status/civil-affairs")
        assert response.status_code == 200, response.data
        revoked = gate(client)
        assert revoked.status.get("civil-affairs").status(70000) == INVALID
        assert revoked.verify(code, INSPECTION).reason is Reason.REVOKED
    finally:
        lowered.extensions["citycode"].db.dispose()
