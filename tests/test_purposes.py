"""An office's purposes name what each may ask for (data minimisation, as Singpass Myinfo does): the console
offers only those certificates and fields, the API refuses others with 422 ``not_needed_for_purpose`` (logged),
``citycode office purpose`` sets them, and the purpose goes with the request to the resident's phone and
history. Real identity codes and API keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from codeservice.accesslog.models import AccessLogEntry
from codeservice.certificates.service import CertificateError
from codeservice.consent import service as consent
from codeservice.consent.models import Office
from codeservice.demo import DEMO_OFFICE, DEMO_PURPOSE_ASKS
from tests.test_cli_consent import _env, ok, run
from tests.test_consent_api import World, build_world
from tests.test_console import clerk_id, dev_sign_in, residents, send

FOOD = "food-licence renewal"
ELDERLY = "elderly allowance application"


@pytest.fixture
def world(app) -> World:
    return build_world(app)


def test_purpose_refuses_a_certificate_it_does_not_need(world: World) -> None:
    # The office may request the elderly card, but a food-licence renewal does not need it.
    response = world.clerk(world.zhou, "POST", "/consent/requests",
                           {"code": world.code(world.elder), "purpose": FOOD,
                            "items": [{"type": "LNYD", "fields": ["name"]}]})
    assert response.status_code == 422
    assert response.json["error"] == "not_needed_for_purpose"
    assert FOOD in response.json["message"] and "LNYD" in response.json["message"]
    last = world.log()[-1]
    assert last.action == "request" and last.subject == world.elder and last.purpose == FOOD
    assert last.outcome == "refused: not_needed_for_purpose"


def test_purpose_refuses_a_field_it_does_not_need(world: World) -> None:
    # The elderly allowance needs the name and the age, not the gender.
    response = world.clerk(world.zhou, "POST", "/consent/requests",
                           {"code": world.code(world.elder), "purpose": ELDERLY,
                            "items": [{"type": "LNYD", "fields": ["name", "gender"]}]})
    assert response.status_code == 422 and response.json["error"] == "not_needed_for_purpose"
    assert "gender" in response.json["message"]
    with world.services.db.session() as s:
        assert s.scalar(select(consent.ConsentRequest.id)) is None  # nothing was asked of the resident


def test_purpose_accepts_what_it_names_and_the_resident_sees_the_purpose(world: World) -> None:
    request_id = world.request(world.elder, [{"type": "LNYD", "fields": ["name", "age_over_60"]}], purpose=ELDERLY)
    phone = world.resident(world.elder)
    pending = phone.get("/api/v1/me/consent-requests").json["requests"]
    assert [(r["id"], r["purpose"]) for r in pending] == [(request_id, ELDERLY)]
    page = phone.get("/requests", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert ELDERLY in page and "for <strong" in page
    history = phone.get("/api/v1/me/access-log").json["entries"]
    assert history[0]["purpose"] == ELDERLY and f"for {ELDERLY}" in history[0]["text"]


def test_demo_purposes_ask_only_what_they_need(app) -> None:
    with app.extensions["citycode"].db.session() as s:
        office = s.get(Office, DEMO_OFFICE)
        assert office is not None
        assert office.purpose_asks == DEMO_PURPOSE_ASKS
        assert [a["type"] for a in consent.asks_of(office, FOOD)] == ["YYZZ", "SPJY"]
        assert consent.asks_of(office, "curiosity") == []


def test_console_offers_only_what_the_chosen_purpose_needs(app) -> None:
    client = app.test_client()
    dev_sign_in(client, clerk_id(app, "Clerk Zhou"))
    page = client.get("/console").get_data(as_text=True)
    groups = dict(re.findall(r'<div class="purpose-asks" data-purpose="([^"]+)"[^>]*>(.*?)</div>', page, re.S))
    assert set(groups) == set(DEMO_PURPOSE_ASKS)
    food = re.findall(r'value="([A-Z]+:[a-z_0-9]+)"', groups[FOOD])
    assert food == [f"{a['type']}:{f}" for a in DEMO_PURPOSE_ASKS[FOOD] for f in a["fields"]]
    assert not any(v.startswith("LNYD:") for v in food)
    assert "LNYD:gender" not in re.findall(r'value="([A-Z]+:[a-z_0-9]+)"', groups[ELDERLY])
    # No purpose chosen yet: every group hidden, its boxes disabled (a disabled box is never sent).
    assert all("disabled" in re.findall(r"<input[^>]*>", body)[0] for body in groups.values())

    refused = send(client, app.extensions["citycode"].issue_identity_code(residents(app)[0]), purpose=FOOD,
                   fields=["LNYD:name"])
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert 'id="request-error"' in html
    # The purpose chosen stays chosen, and only its group is shown and enabled.
    assert re.search(rf'<option value="{FOOD}" selected>', html)
    food_group = re.search(rf'<div class="purpose-asks" data-purpose="{FOOD}">(.*?)</div>', html, re.S)
    assert food_group and "disabled" not in food_group.group(1)


def test_set_purpose_asks_checks_types_and_fields(app) -> None:
    with app.extensions["citycode"].db.session() as s:
        with pytest.raises(CertificateError, match="may not request"):
            consent.set_purpose_asks(s, DEMO_OFFICE, FOOD, [{"type": "HZ", "fields": ["name"]}])
        with pytest.raises(CertificateError, match="no field a holder may show"):
            consent.set_purpose_asks(s, DEMO_OFFICE, FOOD, [{"type": "YYZZ", "fields": ["password"]}])
        with pytest.raises(CertificateError, match="at least one"):
            consent.set_purpose_asks(s, DEMO_OFFICE, FOOD, [])
        with pytest.raises(CertificateError, match="no office"):
            consent.set_purpose_asks(s, "nowhere", FOOD, [{"type": "YYZZ", "fields": ["address"]}])
        office = consent.set_purpose_asks(s, DEMO_OFFICE, "business licence change",
                                          [{"type": "YYZZ", "fields": ["company_name", "address"]}])
        assert "business licence change" in office.purposes
        assert consent.asks_of(office, "business licence change") == [
            {"type": "YYZZ", "fields": ["company_name", "address"]}]


def test_cli_sets_what_a_purpose_may_ask_for(tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    ok(run(env, "init"))
    made = ok(run(env, "office", "purpose", "--id", DEMO_OFFICE, "--purpose", FOOD,
                  "--ask", "yyzz:company_name,address"))
    assert made["purpose_asks"][FOOD] == [{"type": "YYZZ", "fields": ["company_name", "address"]}]
    listed = {o["id"]: o for o in ok(run(env, "office", "list"))}
    assert listed[DEMO_OFFICE]["purpose_asks"][FOOD] == [{"type": "YYZZ", "fields": ["company_name", "address"]}]
    bad = run(env, "office", "purpose", "--id", DEMO_OFFICE, "--purpose", FOOD, "--ask", "HZ:name")
    assert bad.returncode == 2 and "may not request" in bad.stderr + bad.stdout
    assert run(env, "office", "purpose", "--id", DEMO_OFFICE, "--purpose", FOOD, "--ask", "YYZZ").returncode == 2
    # An office added without asks lets each purpose ask every field of its types, as before.
    added = ok(run(env, "office", "add", "--id", "xz-hall-w1", "--name", "Window 1", "--purpose", "p",
                   "--type", "SPJY"))
    assert added["purpose_asks"]["p"][0]["type"] == "SPJY" and "catering" in added["purpose_asks"]["p"][0]["fields"]


def test_refused_purpose_entry_reads_in_history(world: World) -> None:
    world.clerk(world.zhou, "POST", "/consent/requests",
                {"code": world.code(world.elder), "purpose": FOOD, "items": [{"type": "LNYD", "fields": ["name"]}]})
    phone = world.resident(world.elder)
    entries = phone.get("/api/v1/me/access-log").json["entries"]
    assert entries[0]["text"].startswith("Clerk Zhou") and "the purpose did not need it" in entries[0]["text"]
    with world.services.db.session() as s:
        assert s.scalars(select(AccessLogEntry.outcome).order_by(AccessLogEntry.seq.desc())).first() == \
            "refused: not_needed_for_purpose"
