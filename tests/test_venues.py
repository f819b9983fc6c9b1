"""Venue check-in (扫码登记): venue codes (kind ``venue``, signed by ``city-venues``, revocable), the resident's scan,
preview and consented check-in through the API and the page, refusals of forged, expired and revoked codes, the
venue's counts per hour (never who), the data office's logged named request, retention, and the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from codeservice.accesslog.models import AccessLogEntry
from codeservice.clients.service import add_api_client
from codeservice.identity.residents import list_residents
from codeservice.venues.models import CheckIn
from codeservice.venues.service import (
    VENUE_ISSUER,
    CodeRefused,
    add_venue,
    check_venue_code,
    counts_per_hour,
    get_venue,
    purge_checkins,
    record_checkin,
    venue_code,
)
from issuers import render
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring
from sdk import Reason, Scene, TrustList, Verifier, load_anchor
from sdk.base45 import b45decode, b45encode
from sdk.citytime import CITY_TZ
from sdk.claims import CLAIM_VENUE, KINDS, VENUE_ID, VENUE_STATUS_INDEX
from sdk.image import decode_image
from sdk.statuslist import StatusCache

CITYCODE = str(Path(sys.executable).with_name("citycode"))
VENUE = "qd-library"
VENUE_NAME = "青岛市图书馆"


def services_of(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["citycode"]


def pids(app: Flask) -> list[str]:
    with services_of(app).db.session() as db:
        return [r.pid for r in list_residents(db)]


def sign_in(client: FlaskClient, pid: str) -> str:
    page = client.get("/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post("/signin/dev", data={"csrf": csrf, "resident": pid})
    assert response.status_code == 302
    return csrf_of(client, "/checkin")


def csrf_of(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def post(client: FlaskClient, path: str, body: object, key: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)


@pytest.fixture
def venue(web_app: Flask) -> dict[str, str]:
    """A venue with its key and a fresh code, and an admin and an auditor key."""
    web_app.testing = True  # every answer checked against the document (codeservice/contract.py)
    services = services_of(web_app)
    with services.db.session() as db:
        made, key = add_venue(db, VENUE, VENUE_NAME)
        code = venue_code(services.keyring, made)
        _, admin = add_api_client(db, "City administration", "admin")
        _, auditor = add_api_client(db, "City data office", "auditor")
    return {"key": key, "code": code, "admin": admin, "auditor": auditor}


# -- the code ---------------------------------------------------------------------------------------------------
def test_a_venue_code_is_kind_6_small_long_lived_and_names_its_venue(web_app: Flask, venue: dict[str, str]) -> None:
    assert KINDS[6] == "venue" and KINDS[5] == "card"  # 5 is the printed card's
    assert render.qr_version(venue["code"]) <= 9  # version 9 since codes name their city (iss): still small
    trust = services_of(web_app).online._current().trust  # the service's own trust list
    result = Verifier(trust).verify(venue["code"])  # no scene: the code's own checks, its status unknown
    assert result.kind == "venue" and result.venue_id == VENUE and result.issuer == VENUE_ISSUER.id
    assert result.expires_at - result.issued_at == 365 * 86400


def test_a_gate_verifies_a_venue_code_offline_and_learns_of_its_revocation_from_the_status_list(
        web_app: Flask, venue: dict[str, str]) -> None:
    client = web_app.test_client()
    anchor = load_anchor(client.get("/api/v1/trust-anchor").data)
    trust = TrustList.load(client.get("/api/v1/trust-list").get_data(as_text=True), anchor)
    status = StatusCache()
    status.load(client.get(f"/api/v1/status/{VENUE_ISSUER.id}").get_data(as_text=True), trust)
    scene = Scene("venue-checkin", frozenset({"venue"}), single_use=False)
    assert Verifier(trust, status=status).verify(venue["code"], scene).accepted
    assert post(client, f"/api/v1/admin/venues/{VENUE}/revoke", {}, venue["admin"]).json["status"] == "revoked"
    offline = Verifier(trust, status=status)
    assert offline.verify(venue["code"], scene).accepted  # the old list still says valid: offline, it cannot know
    status.load(client.get(f"/api/v1/status/{VENUE_ISSUER.id}").get_data(as_text=True), trust)
    assert Verifier(trust, status=status).verify(venue["code"], scene).reason is Reason.REVOKED


# -- the resident through the API -------------------------------------------------------------------------------
def test_a_resident_previews_then_checks_in_and_sees_it_while_the_venue_sees_only_counts(
        web_app: Flask, venue: dict[str, str]) -> None:
    client = web_app.test_client()
    pid = pids(web_app)[0]
    sign_in(client, pid)
    preview = post(client, "/api/v1/me/checkins/preview", {"code": venue["code"]})
    assert preview.status_code == 200
    assert preview.json == {"venue": {"id": VENUE, "name": VENUE_NAME, "status": "valid"},
                            "recorded": ["venue", "time", "resident"], "retention_days": 14}
    assert client.get("/api/v1/me/checkins").json["checkins"] == []  # a preview records nothing
    refused = post(client, "/api/v1/me/checkins", {"code": venue["code"], "consent": False})
    assert refused.status_code == 422 and refused.json["error"] == "consent_required"
    done = post(client, "/api/v1/me/checkins", {"code": venue["code"], "consent": True})
    assert done.status_code == 201 and done.json["venue"] == VENUE and done.json["venue_name"] == VENUE_NAME
    at = dt.datetime.fromisoformat(done.json["at"])
    assert dt.datetime.fromisoformat(done.json["deleted_after"]) - at == dt.timedelta(days=14)
    mine = client.get("/api/v1/me/checkins").json
    assert [c["venue"] for c in mine["checkins"]] == [VENUE]

    other = web_app.test_client()
    sign_in(other, pids(web_app)[1])
    assert other.get("/api/v1/me/checkins").json["checkins"] == []  # each sees only their own

    day = at.astimezone(CITY_TZ).date().isoformat()
    staff = web_app.test_client()
    counts = staff.get(f"/api/v1/venues/{VENUE}/counts?date={day}", headers={"Authorization": f"Bearer {venue['key']}"})
    assert counts.status_code == 200
    hours = {h["hour"]: h["count"] for h in counts.json["hours"]}
    assert len(hours) == 24 and hours[at.astimezone(CITY_TZ).hour] == 1 and sum(hours.values()) == 1
    assert pid not in counts.get_data(as_text=True)
    assert staff.get(f"/api/v1/venues/{VENUE}/counts?date={day}").status_code == 401
    with services_of(web_app).db.session() as db:
        _, second_key = add_venue(db, "qd-hall", "市民中心")
    foreign = staff.get(f"/api/v1/venues/{VENUE}/counts?date={day}", headers={"Authorization": f"Bearer {second_key}"})
    assert foreign.status_code == 403 and foreign.json["error"] == "forbidden"
    bad_day = staff.get(f"/api/v1/venues/{VENUE}/counts?date=yesterday",
                        headers={"Authorization": f"Bearer {venue['key']}"})
    assert bad_day.status_code == 400 and bad_day.json["error"] == "invalid_day"


def test_the_data_office_names_who_checked_in_only_through_a_request_the_access_log_records(
        web_app: Flask, venue: dict[str, str]) -> None:
    client = web_app.test_client()
    pid = pids(web_app)[0]
    sign_in(client, pid)
    at = dt.datetime.fromisoformat(post(client, "/api/v1/me/checkins", {"code": venue["code"], "consent": True})
                                   .json["at"])
    day = at.astimezone(CITY_TZ).date().isoformat()
    office = web_app.test_client()
    path = f"/api/v1/venues/{VENUE}/named-requests"
    assert post(office, path, {"date": day, "reason": "short"}, venue["auditor"]).status_code == 400
    assert post(office, path, {"date": day, "reason": "Public health tracing, case 118"}, venue["admin"]).status_code \
        == 403
    blank = post(office, path, {"date": day, "reason": "   abc          "}, venue["auditor"])  # 3 once trimmed
    assert blank.status_code == 422 and blank.json["error"] == "reason_required"
    named = post(office, path, {"date": day, "reason": "Public health tracing, case 118"}, venue["auditor"])
    assert named.status_code == 200 and [c["resident"] for c in named.json["checkins"]] == [pid]
    with services_of(web_app).db.session() as db:
        entry = db.scalars(select(AccessLogEntry).where(AccessLogEntry.action == "venue_request")).one()
        assert entry.purpose == "Public health tracing, case 118" and entry.actor.startswith("auditor:")
        assert entry.what == [{"venue": VENUE, "date": day, "residents": 1}]
    log = office.get("/api/v1/audit/log", headers={"Authorization": f"Bearer {venue['auditor']}"})
    assert log.status_code == 200 and "venue_request" in log.get_data(as_text=True)


def _forged(code: str) -> str:
    """The same claims with one byte of the signature changed."""
    raw = bytearray(b45decode(code[4:]))
    raw[-1] ^= 0x01
    return "CC1:" + b45encode(bytes(raw))


@pytest.fixture
def aged_app(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    """The app whose keys were made ten days ago (so that a code issued days ago was signed by a valid key)."""
    from codeservice.accesslog.service import AUDIT_OFFICE
    from codeservice.app import create_app
    from codeservice.services import CHECKS_OFFICE, IDENTITY_OFFICE
    from codeservice.transit.service import TRANSIT_PLATFORM
    from tests.conftest import clear_database, make_settings

    home = tmp_path / "aged"
    home.mkdir(mode=0o700)
    Keyring(home / "keys").initialise([IDENTITY_OFFICE, CHECKS_OFFICE, AUDIT_OFFICE, TRANSIT_PLATFORM, VENUE_ISSUER],
                                      now=time.time() - 10 * 86400)
    app = create_app(make_settings(home, database_url))
    app.testing = True
    yield app
    clear_database(services_of(app).db.engine)
    services_of(app).db.dispose()


def test_forged_expired_revoked_and_foreign_venue_codes_are_refused_with_their_stable_reason(
        aged_app: Flask, tmp_path: Path) -> None:
    web_app = aged_app
    services = services_of(web_app)
    client = web_app.test_client()
    pid = pids(web_app)[0]
    sign_in(client, pid)
    with services.db.session() as db:
        place, _ = add_venue(db, VENUE, VENUE_NAME)
        expired = venue_code(services.keyring, place, days=1, now=time.time() - 3 * 86400)
        venue = {"code": venue_code(services.keyring, place), "admin": add_api_client(db, "Admin", "admin")[1]}
    stranger = Keyring(tmp_path / "stranger")  # a forger's own key under the same issuer name
    stranger.initialise([IssuerInfo(VENUE_ISSUER.id, "Forger", ("venue",))])
    foreign_key = issue_code(stranger.signer(VENUE_ISSUER.id), "venue", subject=None, lifetime=86400,
                             extra={CLAIM_VENUE: {VENUE_ID: VENUE, VENUE_STATUS_INDEX: 0}})
    no_such_venue = issue_code(services.keyring.signer(VENUE_ISSUER.id), "venue", subject=None, lifetime=86400,
                               extra={CLAIM_VENUE: {VENUE_ID: "nowhere", VENUE_STATUS_INDEX: 77}})
    identity = services.issue_identity_code(pid)
    cases = {
        "bad_signature": _forged(venue["code"]),
        "unknown_key": foreign_key,
        "expired": expired,
        "wrong_kind": identity,
        "unknown_venue": no_such_venue,
        "not_a_citycode": "https://example.com/checkin",
    }
    for reason, code in cases.items():
        for path, body in (("/api/v1/me/checkins/preview", {"code": code}),
                           ("/api/v1/me/checkins", {"code": code, "consent": True})):
            answer = post(client, path, body)
            assert answer.status_code == 422, (reason, answer.json)
            assert answer.json["error"] == "code_refused" and answer.json["reason"] == reason, (reason, answer.json)
    post(web_app.test_client(), f"/api/v1/admin/venues/{VENUE}/revoke", {}, venue["admin"])
    revoked = post(client, "/api/v1/me/checkins", {"code": venue["code"], "consent": True})
    assert revoked.status_code == 422 and revoked.json["reason"] == "revoked"
    again = post(web_app.test_client(), f"/api/v1/admin/venues/{VENUE}/code", {}, venue["admin"])
    assert again.status_code == 409 and again.json["error"] == "venue_revoked"
    assert client.get("/api/v1/me/checkins").json["checkins"] == []  # nothing was ever recorded


def test_admin_endpoints_register_venues_once_and_make_codes_of_the_asked_days(web_app: Flask,
                                                                               venue: dict[str, str]) -> None:
    client = web_app.test_client()
    made = post(client, "/api/v1/admin/venues", {"id": "qd-hospital", "name": "市立医院"}, venue["admin"])
    assert made.status_code == 201 and made.json["key"].startswith("cc_v_")
    assert post(client, "/api/v1/admin/venues", {"id": "qd-hospital", "name": "x"}, venue["admin"]).status_code == 409
    assert post(client, "/api/v1/admin/venues", {"id": "Bad Id", "name": "x"}, venue["admin"]).json["error"] == \
        "invalid_venue"
    assert post(client, "/api/v1/admin/venues", {"id": "qd-blank", "name": "   "}, venue["admin"]).status_code == 422
    code = post(client, "/api/v1/admin/venues/qd-hospital/code", {"days": 30}, venue["admin"])
    assert code.status_code == 200 and code.json["days"] == 30
    assert post(client, "/api/v1/admin/venues/qd-nowhere/code", {}, venue["admin"]).json["error"] == "unknown_venue"
    assert post(client, "/api/v1/admin/venues/qd-hospital/code", {"days": 400}, venue["admin"]).status_code == 400
    assert post(client, "/api/v1/admin/venues", {"id": "qd-x", "name": "x"}, venue["auditor"]).status_code == 403


# -- the page ---------------------------------------------------------------------------------------------------
def test_the_page_shows_what_will_be_recorded_before_the_resident_confirms(web_app: Flask,
                                                                          venue: dict[str, str]) -> None:
    client = web_app.test_client()
    csrf = sign_in(client, pids(web_app)[0])
    page = client.get("/checkin").get_data(as_text=True)
    assert "扫码" in page or "登记" in page  # Chinese by default
    assert 'src="/static/vendor/jsQR.js"' in page and 'id="scanner-start"' in page
    preview = client.post("/checkin", data={"csrf": csrf, "code": venue["code"]})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and VENUE_NAME in html and 'id="checkin-confirm"' in html and "14" in html
    with services_of(web_app).db.session() as db:
        assert db.scalars(select(CheckIn)).all() == []  # nothing before the confirmation
    declined = client.post("/checkin/confirm", data={"csrf": csrf, "code": venue["code"]})
    assert declined.status_code == 422
    done = client.post("/checkin/confirm", data={"csrf": csrf, "code": venue["code"], "consent": "yes"})
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and 'id="checkin-done"' in html and 'data-venue="qd-library"' in html
    assert client.post("/checkin/confirm", data={"code": venue["code"], "consent": "yes"}).status_code == 400  # CSRF


@pytest.mark.parametrize(("language", "words"), [("zh", "伪造"), ("en", "forged"), ("bo", "རྫུན")])
def test_a_forged_code_is_refused_on_the_phone_in_the_readers_language(web_app: Flask, venue: dict[str, str],
                                                                      language: str, words: str) -> None:
    client = web_app.test_client()
    csrf = sign_in(client, pids(web_app)[0])
    client.get(f"/lang/{language}")
    answer = client.post("/checkin", data={"csrf": csrf, "code": _forged(venue["code"])})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422 and 'data-reason="bad_signature"' in html and words in html


def test_the_page_sends_a_visitor_who_is_not_signed_in_to_sign_in(web_app: Flask) -> None:
    response = web_app.test_client().get("/checkin")
    assert response.status_code == 302 and response.headers["Location"].endswith("/signin")


# -- retention --------------------------------------------------------------------------------------------------
def test_check_ins_are_deleted_after_the_citys_retention_and_counts_forget_them(web_app: Flask,
                                                                               venue: dict[str, str]) -> None:
    services = services_of(web_app)
    t0 = time.time()
    with services.db.session() as db:
        place = get_venue(db, VENUE)
        old = record_checkin(db, place, pids(web_app)[0], retention_days=14, now=t0 - 15 * 86400)
        recent = record_checkin(db, place, pids(web_app)[1], retention_days=14, now=t0 - 13 * 86400)
        old_day, recent_id = old.day, recent.id
    with services.db.session() as db:
        assert sum(h["count"] for h in counts_per_hour(db, VENUE, old_day)) == 1
        assert purge_checkins(db, now=t0) == 1
    with services.db.session() as db:
        assert [c.id for c in db.scalars(select(CheckIn))] == [recent_id]
        assert sum(h["count"] for h in counts_per_hour(db, VENUE, old_day)) == 0
        assert purge_checkins(db, now=t0 + 86400 + 1) == 1  # the second falls due a day later
        assert db.scalars(select(CheckIn)).all() == []


def test_the_retention_is_the_citys_setting_and_a_check_in_through_the_api_is_kept_that_long(
        tmp_path: Path, database_url: str) -> None:
    from codeservice.app import create_app
    from tests.conftest import clear_database, make_settings

    app = create_app(make_settings(tmp_path / "home", database_url, checkin_retention_days=3))
    try:
        services = services_of(app)
        with services.db.session() as db:
            place, _ = add_venue(db, VENUE, VENUE_NAME)
            code = venue_code(services.keyring, place)
        client = app.test_client()
        sign_in(client, pids(app)[0])
        assert post(client, "/api/v1/me/checkins/preview", {"code": code}).json["retention_days"] == 3
        done = post(client, "/api/v1/me/checkins", {"code": code, "consent": True}).json
        kept = dt.datetime.fromisoformat(done["deleted_after"]) - dt.datetime.fromisoformat(done["at"])
        assert kept == dt.timedelta(days=3)
    finally:
        clear_database(services.db.engine)
        services.db.dispose()


# -- the command line -------------------------------------------------------------------------------------------
def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CITYCODE, *args], env=env, capture_output=True, text=True, timeout=90)


def test_the_cli_adds_venues_prints_posters_that_scan_revokes_counts_and_purges(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
           "CITYCODE_HOME": str(tmp_path / "home")}
    added = run(env, "venue", "add", "--id", VENUE, "--name", VENUE_NAME)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["key"].startswith("cc_v_")
    assert run(env, "venue", "add", "--id", VENUE, "--name", "again").returncode == 2
    poster = tmp_path / "poster.png"
    code = run(env, "venue", "code", VENUE, "--days", "90", "--png", str(poster))
    assert code.returncode == 0, code.stderr
    text = json.loads(code.stdout)["code"]
    assert decode_image(poster) == [text]  # the printed poster scans back to the very code
    listed = json.loads(run(env, "venue", "list").stdout)
    assert listed == [{"id": VENUE, "name": VENUE_NAME, "status": "valid"}]
    revoked = run(env, "venue", "revoke", VENUE)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    assert json.loads(run(env, "venue", "code", VENUE).stderr)["error"] == "venue_revoked"
    assert json.loads(run(env, "venue", "revoke", "qd-nowhere").stderr)["error"] == "unknown_venue"
    counts = json.loads(run(env, "venue", "counts", VENUE, "--date", "2026-12-07").stdout)
    assert len(counts["hours"]) == 24 and sum(h["count"] for h in counts["hours"]) == 0
    assert run(env, "venue", "counts", VENUE, "--date", "someday").returncode == 2
    purged = run(env, "venue", "purge", "--at", "2030-01-01T00:00:00Z")
    assert purged.returncode == 0 and json.loads(purged.stdout) == {"deleted": 0, "retention_days": 14}


def test_a_status_list_of_the_venue_issuer_marks_only_revoked_venues(web_app: Flask, venue: dict[str, str]) -> None:
    services = services_of(web_app)
    with services.db.session() as db:
        second, _ = add_venue(db, "qd-hall", "市民中心")
        code = venue_code(services.keyring, second)
    post(web_app.test_client(), "/api/v1/admin/venues/qd-hall/revoke", {}, venue["admin"])
    with services.db.session() as db:
        with pytest.raises(CodeRefused) as refused:
            check_venue_code(db, services.keyring, code, leeway=30, trust_validity=3600)
        assert refused.value.reason == "revoked"
        assert check_venue_code(db, services.keyring, venue["code"], leeway=30, trust_validity=3600).id == VENUE


def test_the_vendored_qr_decoder_is_the_recorded_jsqr_release() -> None:
    vendor = Path(__file__).resolve().parents[1] / "codeservice" / "static" / "vendor"
    digest = hashlib.sha256((vendor / "jsQR.js").read_bytes()).hexdigest()
    readme = (vendor / "README.md").read_text("utf-8")
    assert "1.4.0" in readme and digest in readme
    assert "Apache License" in (vendor / "jsQR.LICENSE").read_text("utf-8")
