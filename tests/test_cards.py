"""Printed cards (实体卡): the code kind and its scenes offline, and issue, verification and loss through the API, the
command line and the pages, on SQLite and PostgreSQL (docs/without-a-smartphone.md)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from codeservice.accesslog.models import AccessLogEntry
from codeservice.cards.service import CARD_OFFICE, add_months
from codeservice.cli.main import main
from codeservice.clients.service import add_api_client
from codeservice.consent.models import Office
from codeservice.identity.residents import add_resident
from issuers.cards import issue_card_code, new_card_id, render_card
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import Reason, TrustList, Verifier, load_anchor
from sdk.image import decode_image
from sdk.replay import MemoryReplayGuard
from sdk.statuslist import INVALID, StatusCache
from tests.conftest import in_english, make_settings
from tests.test_api import post_verify, sign_in
from verifiers.scenes import get_scene

NOW = int(time.time())  # the trust list is loaded against the real clock; nothing asserts it
YEAR = 365 * 86400


# -- the code kind, offline ---------------------------------------------------------------------------------------
@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    ring = Keyring(tmp_path / "keys")
    ring.initialise([IssuerInfo("city-id", "City Identity Office", ("id",)), CARD_OFFICE], now=NOW - 100 * 86400)
    return ring


def gate(ring: Keyring, lost: dict[int, int] | None = None) -> Verifier:
    trust = TrustList.load(sign_trust_list(ring, validity=7 * 86400, now=NOW), load_anchor(ring.anchor_public_pem()),
                           leeway=0)
    status = StatusCache()
    status.load(sign_status_list(ring.signer("city-card"), lost or {}, size=1024, uri="u", ttl=300,
                                 validity=7 * 86400, now=NOW), trust, at=NOW)
    # the replay guard keeps what it holds by the same clock as the verifier (the real one may be minutes on when
    # the module was imported long before the test runs)
    return Verifier(trust, leeway=30, status=status, clock=lambda: NOW, replay_guard=MemoryReplayGuard(lambda: NOW))


def card(ring: Keyring, index: int = 7, issued: int = NOW - 86400, lifetime: int = 2 * YEAR) -> str:
    return issue_card_code(ring.signer("city-card"), subject=b"\x01" * 10, card_id=new_card_id(),
                           status_index=index, issued_at=issued, expires_at=issued + lifetime)


def test_printed_card_is_taken_on_the_bus_once_a_minute_never_spent_for_good(ring: Keyring) -> None:
    verifier, code = gate(ring), card(ring)
    bus = get_scene("bus")
    start = (int(NOW) // bus.card_window + 1) * bus.card_window + 1  # a second into a window: NOW + 5 stays in it
    first = verifier.verify(code, bus, at=start)
    assert first.accepted and first.kind == "card" and first.issuer == "city-card" and first.subject is not None
    assert verifier.verify(code, bus, at=start + 5).reason is Reason.REPLAYED
    assert verifier.verify(code, bus, at=start + bus.card_window).accepted  # the next ride, the same card


def test_lost_card_is_refused_with_reason_revoked(ring: Keyring) -> None:
    code = card(ring, index=7)
    assert gate(ring, {7: INVALID}).verify(code, get_scene("bus"), at=NOW).reason is Reason.REVOKED
    assert gate(ring, {8: INVALID}).verify(code, get_scene("bus"), at=NOW).accepted


def test_expired_card_is_refused_with_reason_expired(ring: Keyring) -> None:
    code = card(ring, issued=NOW - 40 * 86400, lifetime=30 * 86400)
    assert gate(ring).verify(code, get_scene("bus"), at=NOW).reason is Reason.EXPIRED


def test_scene_that_does_not_take_cards_refuses_with_printed_card_not_accepted(ring: Keyring) -> None:
    verifier, code = gate(ring), card(ring)
    for name in ("service-window", "hospital-kiosk", "inspection"):
        assert verifier.verify(code, get_scene(name), at=NOW).reason is Reason.PRINTED_CARD_NOT_ACCEPTED, name


def test_service_window_takes_a_card_only_with_the_identity_card_checked(ring: Keyring) -> None:
    verifier, code, window = gate(ring), card(ring), get_scene("service-window-card")
    assert verifier.verify(code, window, at=NOW).reason is Reason.ID_CHECK_REQUIRED
    assert verifier.verify(code, window, at=NOW, id_checked=True).accepted


def test_card_signed_by_the_identity_office_is_refused_untrusted_issuer(ring: Keyring) -> None:
    from sdk.claims import CARD_STATUS_INDEX, CLAIM_CARD

    forged = issue_code(ring.signer("city-id"), "card", subject=b"\x01" * 10, lifetime=YEAR, now=NOW,
                        extra={CLAIM_CARD: {CARD_STATUS_INDEX: 1}})
    assert gate(ring).verify(forged, get_scene("bus"), at=NOW).reason is Reason.UNTRUSTED_ISSUER


def test_card_without_its_card_claim_is_malformed(ring: Keyring) -> None:
    bare = issue_code(ring.signer("city-card"), "card", subject=b"\x01" * 10, lifetime=YEAR, now=NOW)
    assert gate(ring).verify(bare, get_scene("bus"), at=NOW).reason is Reason.MALFORMED


def test_the_printed_card_holds_the_code_and_fits_a_small_qr(ring: Keyring) -> None:
    from issuers.render import qr_version

    code = card(ring)
    assert qr_version(code) <= 9
    for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        assert render_card(code, "李伟", fmt).startswith(magic)
    assert decode_image(render_card(code, "བཀྲ་ཤིས། Tashi")) == [code]


def test_card_lifetime_is_calendar_months_in_city_time() -> None:
    start = dt.datetime(2026, 1, 31, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
    assert add_months(start, 1) == dt.datetime(2026, 2, 28, 4, 0, tzinfo=dt.UTC)
    assert add_months(start, 24) == dt.datetime(2028, 1, 31, 4, 0, tzinfo=dt.UTC)


# -- the service: API, pages ------------------------------------------------------------------------------------
def services(app):  # type: ignore[no-untyped-def]
    return app.extensions["citycode"]


@pytest.fixture
def world(web_app):  # type: ignore[no-untyped-def]
    """The app, a clerk's key, and two residents: Li Wei (display name 李伟) and one without a display name."""
    with services(web_app).db.session() as db:
        office = db.scalars(select(Office).order_by(Office.id)).first()
        _, key = add_api_client(db, "Card clerk", "clerk", office=office.id)
        li = add_resident(db, "李伟").pid
        nameless = add_resident(db).pid
    return web_app, key, li, nameless


def api(app, key: str, path: str, body=None):  # type: ignore[no-untyped-def]
    return app.test_client().post(f"/api/v1{path}", data=json.dumps(body) if body is not None else None,
                                  content_type="application/json" if body is not None else None,
                                  headers={"Authorization": f"Bearer {key}"})


def image_code(data_url: str) -> str:
    head, _, payload = data_url.partition(",")
    assert head == "data:image/png;base64"
    found = decode_image(base64.b64decode(payload))
    assert len(found) == 1
    return found[0]


def test_clerk_issues_a_card_whose_printed_qr_the_bus_accepts_and_a_pull_refuses(world) -> None:
    app, key, li, _ = world
    issued = api(app, key, "/cards", {"resident": li})
    assert issued.status_code == 201, issued.json
    body = issued.json
    assert body["name"] == "李伟" and body["status"] == "valid" and body["resident"] == li
    code = image_code(body["image"])
    assert "李伟" not in code and li not in code
    client = app.test_client()
    bus = post_verify(client, {"code": code, "scene": "bus"}).json
    assert bus["accepted"] and bus["kind"] == "card" and bus["subject"] == li and bus["code_id"] == body["id"]
    assert post_verify(client, {"code": code, "scene": "service-window"}).json["reason"] == "printed_card_not_accepted"
    window = {"code": code, "scene": "service-window-card"}
    assert post_verify(client, window).json["reason"] == "id_check_required"
    assert post_verify(client, {**window, "id_card_checked": True}).json["accepted"]
    with services(app).db.session() as db:
        logged = db.scalars(select(AccessLogEntry).where(AccessLogEntry.subject == li)).all()
    assert [(e.action, e.outcome) for e in logged] == [("card_issue", "issued")]


def test_lost_card_reported_by_the_resident_is_refused_revoked_at_once(world) -> None:
    app, key, li, _ = world
    code = image_code(api(app, key, "/cards", {"resident": li}).json["image"])
    resident = app.test_client()
    sign_in(resident, li)
    listed = resident.get("/api/v1/me/cards").json["cards"]
    assert [c["status"] for c in listed] == ["valid"]
    assert post_verify(resident, {"code": code, "scene": "bus"}).json["accepted"]  # the status lists are read now
    lost = resident.post(f"/api/v1/me/cards/{listed[0]['id']}/lost")
    assert lost.status_code == 200 and lost.json["status"] == "lost" and lost.json["lost_at"]
    result = post_verify(resident, {"code": code, "scene": "metro-gate"}).json
    assert result["accepted"] is False and result["reason"] == "revoked"
    again = resident.post(f"/api/v1/me/cards/{listed[0]['id']}/lost")
    assert again.json["lost_at"] == lost.json["lost_at"]  # reporting again changes nothing
    token = app.test_client().get("/api/v1/status/city-card")
    assert token.status_code == 200 and token.mimetype == "application/statuslist+jwt"


def test_clerk_takes_a_loss_report_and_a_new_card_may_then_be_printed(world) -> None:
    app, key, li, _ = world
    first = api(app, key, "/cards", {"resident": li, "name": "Li Wei"}).json
    refused = api(app, key, "/cards", {"resident": li})
    assert refused.status_code == 409 and refused.json["error"] == "card_exists"
    assert api(app, key, f"/cards/{first['id']}/lost").json["status"] == "lost"
    second = api(app, key, "/cards", {"resident": li, "format": "pdf"})
    assert second.status_code == 201 and second.json["image"].startswith("data:application/pdf;base64,")
    assert second.json["status_index"] != first["status_index"]


def test_card_requests_that_cannot_be_carried_out_are_refused_with_stable_errors(world) -> None:
    app, key, li, nameless = world
    assert api(app, key, "/cards", {"resident": "nosuchresident00"}).json["error"] == "not_found"
    no_name = api(app, key, "/cards", {"resident": nameless})
    assert no_name.status_code == 422 and no_name.json["error"] == "invalid_name"
    assert api(app, key, "/cards", {"resident": li, "name": "x" * 41}).json["error"] == "invalid_name"
    assert api(app, key, "/cards", {"resident": li, "name": "a\u0000b"}).status_code == 400
    assert api(app, key, "/cards", {"resident": li, "extra": 1}).json["error"] == "invalid_body"
    assert api(app, key, "/cards/zz/lost").status_code == 404
    assert app.test_client().post("/api/v1/cards", data="{}", content_type="application/json").status_code == 401
    with services(app).db.session() as db:
        from codeservice.identity.residents import get_resident

        get_resident(db, li).frozen = True  # type: ignore[union-attr]
    frozen = api(app, key, "/cards", {"resident": li})
    assert frozen.status_code == 403 and frozen.json["error"] == "identity_frozen"


def test_a_resident_cannot_report_another_residents_card_lost(world) -> None:
    app, key, li, nameless = world
    card_id = api(app, key, "/cards", {"resident": li}).json["id"]
    other = app.test_client()
    sign_in(other, nameless)
    assert other.get("/api/v1/me/cards").json == {"cards": []}
    refused = other.post(f"/api/v1/me/cards/{card_id}/lost")
    assert refused.status_code == 404 and refused.json["error"] == "not_found"
    assert app.test_client().get("/api/v1/me/cards").status_code == 401


def test_expired_card_is_refused_online_with_reason_expired(world) -> None:
    app, key, li, _ = world
    code = image_code(api(app, key, "/cards", {"resident": li}).json["image"])
    end = add_months(dt.datetime.now(dt.UTC), services(app).settings.card_months)
    # every key the service trusts, for years (the online list lasts days): the card's own expiry decides
    verifier = services(app).evidence_verifier()
    assert verifier.verify(code, get_scene("bus"), at=(end - dt.timedelta(days=2)).timestamp()).reason \
        is not Reason.EXPIRED
    assert verifier.verify(code, get_scene("bus"), at=(end + dt.timedelta(days=1)).timestamp()).reason \
        is Reason.EXPIRED


def csrf_of(client, path: str) -> str:  # type: ignore[no-untyped-def]
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def test_resident_page_lists_the_card_and_reports_it_lost(world) -> None:
    app, key, li, _ = world
    in_english(app)
    card_id = api(app, key, "/cards", {"resident": li}).json["id"]
    client = app.test_client()
    sign_in(client, li)
    page = client.get("/cards").get_data(as_text=True)
    assert f'data-card="{card_id}" data-status="valid"' in page and "Report this card lost" in page
    assert "My printed cards" in client.get("/code").get_data(as_text=True)
    done = client.post(f"/cards/{card_id}/lost", data={"csrf": csrf_of(client, "/cards")})
    assert done.status_code == 303
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'data-status="lost"' in page and "No gate or window accepts it any more" in page
    assert client.post(f"/cards/{card_id}/lost", data={}).status_code == 400  # no CSRF token


def test_pages_are_chinese_by_default(world) -> None:
    app, key, li, _ = world
    api(app, key, "/cards", {"resident": li})
    client = app.test_client()
    sign_in(client, li)
    page = client.get("/cards").get_data(as_text=True)
    assert "我的实体卡" in page and "挂失这张卡" in page


def test_clerk_prints_a_card_on_the_console_only_after_checking_the_identity_card(world) -> None:
    app, _, li, _ = world
    in_english(app)
    from tests.test_console import clerk_id, dev_sign_in

    client = app.test_client()
    dev_sign_in(client, clerk_id(app, "Clerk Zhou"))
    csrf = csrf_of(client, "/console/cards")
    unchecked = client.post("/console/cards", data={"csrf": csrf, "resident": li, "name": "李伟"})
    assert unchecked.status_code == 400 and "Check the resident’s identity card first" in unchecked.get_data(
        as_text=True)
    page = client.post("/console/cards", data={"csrf": csrf, "resident": li, "name": "李伟", "id_checked": "yes"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    image = re.search(r'id="card-image" src="([^"]+)"', html)
    assert image and services(app).online.verify(image_code(image.group(1)), "bus").accepted
    card_id = re.search(r'id="issued-card" data-card="([0-9a-f]{16})"', html).group(1)  # type: ignore[union-attr]
    again = client.post("/console/cards", data={"csrf": csrf, "resident": li, "id_checked": "yes"})
    assert again.status_code == 409 and "already holds a valid card" in again.get_data(as_text=True)
    lost = client.post("/console/cards/lost", data={"csrf": csrf, "card": card_id})
    assert lost.status_code == 200 and f"Card {card_id} is reported lost" in lost.get_data(as_text=True)
    assert client.post("/console/cards/lost", data={"csrf": csrf, "card": "nope"}).status_code == 404
    assert app.test_client().get("/console/cards").status_code == 302  # not signed in: to the console's sign-in


# -- the command line -------------------------------------------------------------------------------------------
def test_command_line_issues_lists_and_reports_a_card_lost(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "home", database_url)
    env = {"CITYCODE_HOME": str(settings.home), "CITYCODE_DATABASE_URL": settings.database_url}
    runner = CliRunner()
    made = runner.invoke(main, ["resident", "add", "--name", "王芳"], env=env)
    pid = json.loads(made.output)["id"]
    out = tmp_path / "card.pdf"
    issued = runner.invoke(main, ["card", "issue", pid, "--out", str(out)], env=env)
    assert issued.exit_code == 0, issued.output
    card = json.loads(issued.output)
    assert card["format"] == "pdf" and out.read_bytes().startswith(b"%PDF") and card["name"] == "王芳"
    png = tmp_path / "again.png"
    twice = runner.invoke(main, ["card", "issue", pid, "--out", str(png)], env=env)
    assert twice.exit_code == 2 and json.loads(twice.stderr)["error"] == "card_exists" and not png.exists()
    listed = runner.invoke(main, ["card", "list", pid], env=env)
    assert [c["id"] for c in json.loads(listed.output)] == [card["id"]]
    lost = runner.invoke(main, ["card", "lost", card["id"]], env=env)
    assert lost.exit_code == 0 and json.loads(lost.output)["status"] == "lost"
    issued = runner.invoke(main, ["card", "issue", pid, "--name", "Wang Fang", "--out", str(png)], env=env)
    assert issued.exit_code == 0 and decode_image(png.read_bytes())[0].startswith("CC1:")
    missing = runner.invoke(main, ["card", "lost", "0000000000000000"], env=env)
    assert missing.exit_code == 2 and json.loads(missing.stderr)["error"] == "not_found"
    from codeservice.services import Services
    from tests.conftest import clear_database

    built = Services(settings)
    clear_database(built.db.engine)
    built.db.dispose()


def test_a_card_ride_uploaded_by_a_bus_is_proven_billed_to_the_account_and_charged_once_a_window(world) -> None:
    """A bus takes a printed card once a minute: each ride's record is proven by the card it carries, billed to
    the resident's transit account (never the pid), and a second record of the same ride is a copy."""
    from codeservice.transit.models import GateRecord, TransitAccount
    from codeservice.transit.service import ensure_account

    app, key, li, _ = world
    with services(app).db.session() as db:
        _, device = add_api_client(db, "Bus 301 reader", "device", operator="qd-bus")
        ensure_account(db, li, fare_limit=2000, today=dt.date.today())
    code = image_code(api(app, key, "/cards", {"resident": li}).json["image"])
    claims = post_verify(app.test_client(), {"code": code, "scene": "bus"}).json
    window = get_scene("bus").card_window
    start = (int(time.time()) // window - 3) * window + 1

    def ride(at: float, **overrides):  # type: ignore[no-untyped-def]
        return {"record_id": os.urandom(16).hex(), "gate_id": "bus-301", "operator": "qd-bus", "scene": "bus",
                "station": None, "line": "301", "direction": None, "at": at, "accepted": True, "reason": "ok",
                "entitlement": None, "online": False, "kind": "card", "account": li, "card_type": None,
                "fare_limit": None,
                "credential_id": None, "code_id": claims["code_id"], "code": code, **overrides}

    first, copy, next_ride = ride(start), ride(start + 5), ride(start + window)
    answer = api(app, device, "/gate/records", {"records": [first, copy, next_ride]}).json
    assert answer.get("stored") == [first["record_id"], next_ride["record_id"]], answer
    assert answer["duplicates"] == [copy["record_id"]]
    assert [c["record_id"] for c in answer["code_duplicates"]] == [copy["record_id"]], answer
    with services(app).db.session() as db:
        account = db.scalars(select(TransitAccount).where(TransitAccount.resident == li)).one()
        stored = db.get(GateRecord, first["record_id"])
        assert stored is not None and stored.account == account.account != li
        assert stored.duplicate_of is None and db.get(GateRecord, copy["record_id"]).duplicate_of == first["record_id"]

    unproven = [ride(start + 2 * window, code=None), ride(start + 2 * window, account="0" * 20),
                ride(start + 2 * window, code=code[:-3] + "AAA")]
    refused = api(app, device, "/gate/records", {"records": unproven}).json
    assert refused["stored"] == [] and [r["error"].split(":")[0] for r in refused["rejected"]] == ["unproven"] * 3
