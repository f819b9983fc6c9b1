"""The clerk's console and the resident's request and history pages, through the Flask test client, on SQLite
and on PostgreSQL: signing in (development list, API key), what needs which session, the scanned code's
checks, and the whole pull (request, partial approval, one receive of exactly what was approved, history)."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from sqlalchemy import func, select

from codeservice.accesslog.models import AccessLogEntry
from codeservice.app import create_app
from codeservice.clients.models import ApiClient
from codeservice.clients.service import add_api_client
from codeservice.consent.models import ConsentRequest
from codeservice.demo import DEMO_OFFICE
from codeservice.identity.models import Resident
from codeservice.identity.residents import list_residents
from tests.conftest import clear_database, in_english, make_settings
from tests.test_api import sign_in

PURPOSE = "elderly allowance application"
ASKED = ["LNYD:name", "LNYD:birth_date", "LNYD:age_over_60"]


@pytest.fixture
def clerk(app):
    """A test client signed in to the console as Clerk Zhou."""
    client = app.test_client()
    dev_sign_in(client, clerk_id(app, "Clerk Zhou"))
    return client


@pytest.fixture
def resident(app):
    """A test client signed in as the first demo resident (who holds the elderly card LNYD)."""
    client = app.test_client()
    sign_in(client, residents(app)[0])
    return client


def services(app):
    return app.extensions["citycode"]


def residents(app) -> list[str]:
    with services(app).db.session() as s:
        return [r.pid for r in list_residents(s)]


def clerk_id(app, name: str) -> int:
    with services(app).db.session() as s:
        return int(s.scalars(select(ApiClient.id).where(ApiClient.name == name)).one())


def csrf_of(client, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def dev_sign_in(client, cid: int):
    return client.post("/console/signin/dev", data={"csrf": csrf_of(client, "/console/signin"), "clerk": str(cid)})


def key_sign_in(client, key: str):
    return client.post("/console/signin/key", data={"csrf": csrf_of(client, "/console/signin"), "key": key})


def requests_made(app) -> int:
    with services(app).db.session() as s:
        return int(s.scalar(select(func.count()).select_from(ConsentRequest)) or 0)


def send(client, code: str, purpose: str = PURPOSE, fields=tuple(ASKED), keep: int = 30):
    csrf = csrf_of(client, "/console")
    return client.post("/console/requests", data={"csrf": csrf, "code": code, "purpose": purpose,
                                                   "fields": list(fields), "keep_minutes": str(keep)})


def page_csrf(client) -> str:
    page = client.get("/console").get_data(as_text=True)
    return re.search(r'data-csrf="([^"]+)"', page).group(1)


def receive(client, request_id: str, csrf: str | None):
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return client.post(f"/console/requests/{request_id}/receive", headers=headers)


# -- signing in ------------------------------------------------------------------------------------
def test_pages_need_sign_in(app):
    client = app.test_client()
    for path in ("/console", "/console?request=abc"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/console/signin")
    status = client.get("/console/requests/abc")
    assert status.status_code == 401 and status.json["error"] == "unauthorised"
    csrf = csrf_of(client, "/console/signin")
    refused = client.post("/console/requests/abc/receive", headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 401
    sent = client.post("/console/requests", data={"csrf": csrf, "code": "x", "purpose": PURPOSE})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/console/signin")
    for path in ("/requests", "/history"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/signin")
    pending = client.get("/requests/pending")
    assert pending.status_code == 401 and pending.json["error"] == "unauthorised"
    answer = client.post("/requests/abc", data={"csrf": csrf, "decision": "refuse"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/signin")


def test_development_sign_in_lists_the_clerks_only(app):
    client = app.test_client()
    page = client.get("/console/signin").get_data(as_text=True)
    assert 'data-clerk="Clerk Zhou"' in page and 'data-clerk="Clerk Sun"' in page
    assert "Queue kiosk 1" not in page  # a device, not a clerk
    assert 'name="key"' in page

    response = dev_sign_in(client, clerk_id(app, "Clerk Zhou"))
    assert response.status_code == 302 and response.headers["Location"].endswith("/console")
    console = client.get("/console")
    assert console.status_code == 200
    html = console.get_data(as_text=True)
    assert "Clerk Zhou" in html and "Window 3, Central Service Hall" in html
    assert PURPOSE in html and 'value="LNYD:age_over_60"' in html and 'value="YYZZ:company_name"' in html
    assert console.headers["Cache-Control"] == "no-store"


def test_development_sign_in_refuses_a_device_and_needs_the_form_token(app):
    client = app.test_client()
    response = dev_sign_in(client, clerk_id(app, "Queue kiosk 1"))
    assert response.status_code == 302 and "error=clerk" in response.headers["Location"]
    assert client.get("/console").status_code == 302
    assert client.post("/console/signin/dev", data={"clerk": str(clerk_id(app, "Clerk Zhou"))}).status_code == 400
    assert client.get("/console").status_code == 302


def test_api_key_sign_in_and_a_wrong_key(app):
    with services(app).db.session() as s:
        _, clerk_key = add_api_client(s, "Clerk Wu", "clerk", office=DEMO_OFFICE)
        _, verifier_key = add_api_client(s, "Pharmacy", "verifier", types=["LNYD"])
    client = app.test_client()
    for wrong in ("cc_c_not-a-key", verifier_key, ""):
        response = key_sign_in(client, wrong)
        assert response.status_code == 302 and "error=key" in response.headers["Location"]
        assert client.get("/console").status_code == 302
    assert "not an active clerk" in client.get("/console/signin?error=key").get_data(as_text=True)

    response = key_sign_in(client, clerk_key)
    assert response.status_code == 302 and response.headers["Location"].endswith("/console")
    assert "Clerk Wu" in client.get("/console").get_data(as_text=True)

    with services(app).db.session() as s:  # a disabled key ends the console's session at once
        s.scalars(select(ApiClient).where(ApiClient.name == "Clerk Wu")).one().active = False
    assert client.get("/console").status_code == 302


def test_without_development_sign_in_only_a_key_signs_in(tmp_path):
    app = create_app(make_settings(tmp_path / "home", dev_signin="false"))
    client = app.test_client()
    page = client.get("/console/signin").get_data(as_text=True)
    assert "data-clerk=" not in page and 'name="key"' in page
    assert client.post("/console/signin/dev", data={"csrf": csrf_of(client, "/console/signin"),
                                                    "clerk": str(clerk_id(app, "Clerk Zhou"))}).status_code == 404
    with services(app).db.session() as s:
        _, key = add_api_client(s, "Clerk Wu", "clerk", office=DEMO_OFFICE)
    assert key_sign_in(client, key).status_code == 302
    assert client.get("/console").status_code == 200


def test_a_resident_session_is_not_a_clerk_session_and_back(app, resident):
    assert resident.get("/code").status_code == 200
    response = resident.get("/console")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/signin")
    assert resident.get("/console/requests/abc").status_code == 401
    # A clerk signing in on the same browser ends the resident's session, and the other way round.
    dev_sign_in(resident, clerk_id(app, "Clerk Zhou"))
    assert resident.get("/console").status_code == 200
    assert resident.get("/requests").status_code == 302
    assert resident.get("/code").status_code == 302
    sign_in(resident, residents(app)[0])
    assert resident.get("/console").status_code == 302


# -- the scanned code --------------------------------------------------------------------------------
def test_garbage_or_missing_codes_create_nothing(app, clerk):
    for code, shown in (("garbage", "not a citycode"), ("HC1:NOT-A-CODE", "not accepted"), ("x" * 5000, "not a"),
                        ("", "Scan the resident")):
        response = send(clerk, code)
        assert response.status_code == 400, code
        html = response.get_data(as_text=True)
        assert 'id="request-error"' in html and shown in html, html
        assert f'value="{PURPOSE}" selected' in html  # the clerk's choice survives the error
        assert 'value="LNYD:birth_date" checked' in html
    assert requests_made(app) == 0
    with services(app).db.session() as s:  # each scanned refusal is logged (an empty field is not a scan)
        outcomes = [e.outcome for e in s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq))]
    assert len(outcomes) == 3 and all(o.startswith("refused: code not_a_citycode") or o.startswith("refused: code ")
                                      for o in outcomes), outcomes


def test_an_expired_code_creates_nothing(app, clerk, monkeypatch):
    code = services(app).issue_identity_code(residents(app)[0])
    online = services(app).online
    verify = online.verify
    monkeypatch.setattr(online, "verify", lambda text, scene: verify(text, scene, at=time.time() + 3600))
    response = send(clerk, code)
    assert response.status_code == 400
    assert "The code was not accepted: code has expired" in response.get_data(as_text=True)
    assert requests_made(app) == 0


def test_a_frozen_identity_is_refused(app, clerk):
    pid = residents(app)[0]
    code = services(app).issue_identity_code(pid)
    with services(app).db.session() as s:
        s.scalars(select(Resident).where(Resident.pid == pid)).one().frozen = True
    response = send(clerk, code)
    assert response.status_code == 400 and "frozen" in response.get_data(as_text=True)
    assert requests_made(app) == 0


def test_purpose_fields_and_keep_are_checked(app, clerk):
    code = services(app).issue_identity_code(residents(app)[0])
    response = send(clerk, code, purpose="marketing")
    assert response.status_code == 403 and "may not state that purpose" in response.get_data(as_text=True)
    response = send(clerk, code, fields=[])
    assert response.status_code == 400 and "Tick at least one field" in response.get_data(as_text=True)
    response = send(clerk, code, fields=["LNYD:shoe_size"])
    assert response.status_code == 400 and "cannot request shoe_size" in response.get_data(as_text=True)
    response = send(clerk, code, keep=99999)
    assert response.status_code == 400
    assert requests_made(app) == 0
    with services(app).db.session() as s:  # the refused purpose and the unknown field are logged, about the resident
        refused = [(e.outcome, e.subject) for e in s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq))]
    assert refused == [("refused: purpose", residents(app)[0]), ("refused: invalid_body", residents(app)[0])]


def test_a_clerk_beyond_the_allowance_is_refused_and_logged(app):
    with services(app).db.session() as s:
        _, key = add_api_client(s, "Clerk Slow", "clerk", office=DEMO_OFFICE, rate_per_minute=1)
    client = app.test_client()
    key_sign_in(client, key)
    code = services(app).issue_identity_code(residents(app)[0])
    assert send(client, code).status_code == 303
    response = send(client, code)
    assert response.status_code == 403 and "Too many requests in a minute" in response.get_data(as_text=True)
    assert requests_made(app) == 1
    with services(app).db.session() as s:
        assert s.scalar(select(func.count()).select_from(AccessLogEntry)
                        .where(AccessLogEntry.action == "rate_limited")) == 1


# -- the whole pull --------------------------------------------------------------------------------
def _request(app, clerk) -> str:
    code = services(app).issue_identity_code(residents(app)[0])
    response = send(clerk, code)
    assert response.status_code == 303, response.get_data(as_text=True)
    match = re.search(r"/console\?request=([0-9a-f]+)$", response.headers["Location"])
    assert match
    return match.group(1)


def test_request_partial_approval_one_receive_and_history(app, clerk, resident):
    request_id = _request(app, clerk)
    status = clerk.get(f"/console/requests/{request_id}").json
    assert status["status"] == "pending" and status["purpose"] == PURPOSE and not status["can_receive"]
    assert [f["name"] for f in status["items"][0]["fields"]] == ["name", "birth_date", "age_over_60"]
    console = clerk.get(f"/console?request={request_id}").get_data(as_text=True)
    assert f'data-request-id="{request_id}"' in console and 'id="scan"' in console
    assert "Date of birth" in console

    # The resident's page shows who asks, why and for how long, each field ticked.
    page = resident.get("/requests").get_data(as_text=True)
    assert f'data-request="{request_id}"' in page
    for shown in ("Window 3, Central Service Hall", "Clerk Zhou", PURPOSE, "30 minutes", "Approve selected"):
        assert shown in page
    assert page.count("checked") == 3
    pending = resident.get("/requests/pending").json["requests"]
    assert [r["id"] for r in pending] == [request_id] and "Clerk Zhou" in pending[0]["html"]

    # Nothing to receive before the answer.
    csrf = page_csrf(clerk)
    early = receive(clerk, request_id, csrf)
    assert early.status_code == 409 and early.json["error"] == "not_approved"

    csrf_resident = csrf_of(resident, "/requests")
    nothing = resident.post(f"/requests/{request_id}", data={"csrf": csrf_resident, "decision": "approve"})
    assert nothing.status_code == 400 and "Tick at least one item" in nothing.get_data(as_text=True)
    answer = resident.post(f"/requests/{request_id}", data={"csrf": csrf_resident, "decision": "approve",
                                                            "fields": ["LNYD:name", "LNYD:age_over_60"]})
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/requests?answered={request_id}")
    done = resident.get(answer.headers["Location"]).get_data(as_text=True)
    assert "You let Window 3, Central Service Hall take your elderly preferential card (Name, 60 or older)" in done
    assert resident.get("/requests/pending").json["requests"] == []

    status = clerk.get(f"/console/requests/{request_id}").json
    assert status["status"] == "approved" and status["can_receive"]
    assert [f["name"] for f in status["approved"][0]["fields"]] == ["name", "age_over_60"]

    # Another clerk of the same office sees nothing and receives nothing.
    other = app.test_client()
    dev_sign_in(other, clerk_id(app, "Clerk Sun"))
    assert other.get(f"/console/requests/{request_id}").status_code == 404
    assert receive(other, request_id, page_csrf(other)).status_code == 403

    assert receive(clerk, request_id, None).status_code == 400  # the page's token is required
    assert receive(clerk, request_id, "forged").status_code == 400
    got = receive(clerk, request_id, csrf)
    assert got.status_code == 200, got.json
    [cert] = got.json["received"]
    assert cert["type"] == "LNYD" and cert["verified"] is True
    assert cert["issuer_name"] == "City Civil Affairs Bureau"
    assert {f["name"]: f["text"] for f in cert["fields"]} == {"name": "Li Wei", "age_over_60": "yes"}
    assert "birth_date" not in got.get_data(as_text=True)
    again = receive(clerk, request_id, csrf)
    assert again.status_code == 409 and again.json["error"] == "already_fetched"
    assert clerk.get(f"/console/requests/{request_id}").json["status"] == "fetched"

    history = resident.get("/history").get_data(as_text=True)
    fetches = re.findall(r'data-action="fetch"[^>]*>\s*<p class="what">([^<]+)</p>', history)
    took = [text for text in fetches if " took " in text]
    assert took == [f"Clerk Zhou, Window 3, Central Service Hall took your elderly preferential card "
                    f"(name, 60 or older) for {PURPOSE}"]
    # Newest first: the refused second receive above the one that took it, the other clerk's attempt below.
    assert fetches.index(took[0]) == 1 and "tried to take" in fetches[0] and "taken once already" in fetches[0]
    assert any(text.startswith("Clerk Sun") and "another clerk had asked" in text for text in fetches[2:])


def test_refusal(app, clerk, resident):
    request_id = _request(app, clerk)
    csrf = csrf_of(resident, "/requests")
    answer = resident.post(f"/requests/{request_id}", data={"csrf": csrf, "decision": "refuse"})
    assert answer.status_code == 303
    assert "Nothing was shared" in resident.get(answer.headers["Location"]).get_data(as_text=True)
    assert clerk.get(f"/console/requests/{request_id}").json["status"] == "refused"
    refused = receive(clerk, request_id, page_csrf(clerk))
    assert refused.status_code == 409 and refused.json["error"] == "not_approved"
    late = resident.post(f"/requests/{request_id}", data={"csrf": csrf, "decision": "approve",
                                                          "fields": ["LNYD:name"]})
    assert late.status_code == 409 and "no longer waiting" in late.get_data(as_text=True)
    assert "You refused" in resident.get("/history").get_data(as_text=True)


def test_the_console_releases_nothing_for_an_identity_frozen_after_approval(app, clerk, resident):
    request_id = _request(app, clerk)
    answer = resident.post(f"/requests/{request_id}", data={"csrf": csrf_of(resident, "/requests"),
                                                            "decision": "approve", "fields": ASKED})
    assert answer.status_code == 303
    assert clerk.get(f"/console/requests/{request_id}").json["can_receive"]
    pid = residents(app)[0]
    with services(app).db.session() as s:  # the resident reports a lost phone: the identity is frozen
        s.scalars(select(Resident).where(Resident.pid == pid)).one().frozen = True
    refused = receive(clerk, request_id, page_csrf(clerk))
    assert refused.status_code == 403 and refused.json["error"] == "identity_frozen"
    assert "received" not in refused.json and "Li Wei" not in refused.get_data(as_text=True)
    with services(app).db.session() as s:
        last = s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq.desc()).limit(1)).one()
        assert (last.action, last.outcome, last.subject) == ("fetch", "refused: identity_frozen", pid)
        assert last.actor_label == "Clerk Zhou, Window 3, Central Service Hall"
        assert s.get(ConsentRequest, request_id).status == "approved"
        assert s.scalar(select(func.count()).select_from(AccessLogEntry)
                        .where(AccessLogEntry.outcome == "released")) == 0


def test_the_history_page_shows_city_time(app, resident):
    from codeservice.consent import service as consent

    late = dt.datetime(2026, 11, 23, 17, 30, tzinfo=dt.UTC)  # 01:30 on 24 November in the city
    with services(app).db.session() as s:
        zhou = s.scalars(select(ApiClient).where(ApiClient.name == "Clerk Zhou")).one()
        consent.create_request(s, zhou, resident=residents(app)[0], purpose=PURPOSE,
                               items=[{"type": "LNYD", "fields": ["name"]}], now=late)
    page = resident.get("/history").get_data(as_text=True)
    match = re.search(r'data-action="request"[^>]*>\s*<p class="what">([^<]+)</p>\s*<time datetime="([^"]+)">([^<]+)'
                      r"</time>", page)
    assert match, page
    text, stamp, shown = match.groups()
    assert stamp == "2026-11-23T17:30:00.000000Z" and shown == "2026-11-24 01:30"
    assert text == ("Clerk Zhou, Window 3, Central Service Hall asked for your elderly preferential card (name) "
                    f"for {PURPOSE}")
    assert "UTC" not in page and "17:30" not in shown


def test_the_history_page_and_the_api_expire_overdue_requests_alike(app, clerk, resident):
    request_id = _request(app, clerk)
    with services(app).db.session() as s:
        s.get(ConsentRequest, request_id).answer_by = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    entries = resident.get("/api/v1/me/access-log").json["entries"]
    assert [e["action"] for e in entries] == ["expire", "request"]
    page = resident.get("/history").get_data(as_text=True)
    assert page.count('data-action="expire"') == 1 and "expired unanswered" in page
    assert clerk.get(f"/console/requests/{request_id}").json["status"] == "expired"


def test_the_resident_pages_sign_checkpoints_when_due(app, clerk, resident, monkeypatch):
    from codeservice.accesslog import service as accesslog
    from codeservice.accesslog.models import AuditCheckpoint

    monkeypatch.setattr(accesslog, "CHECKPOINT_EVERY", 2)
    request_id = _request(app, clerk)  # entry 1
    csrf = csrf_of(resident, "/requests")
    answer = resident.post(f"/requests/{request_id}", data={"csrf": csrf, "decision": "refuse"})  # entry 2
    assert answer.status_code == 303
    with services(app).db.session() as s:
        assert [m.seq for m in s.scalars(select(AuditCheckpoint))] == [2]


def test_a_resident_cannot_answer_someone_elses_request(app, clerk):
    request_id = _request(app, clerk)
    other = app.test_client()
    sign_in(other, residents(app)[1])
    assert other.get("/requests/pending").json["requests"] == []
    answer = other.post(f"/requests/{request_id}", data={"csrf": csrf_of(other, "/code"), "decision": "refuse"})
    assert answer.status_code == 404
    assert clerk.get(f"/console/requests/{request_id}").json["status"] == "pending"
    assert "Clerk Zhou" not in other.get("/history").get_data(as_text=True)


def test_the_console_uses_the_configured_consent_windows(tmp_path, database_url):
    app = create_app(make_settings(tmp_path / "home", database_url, consent_answer_minutes=12,
                                   consent_fetch_minutes=9))
    try:
        clerk = app.test_client()
        dev_sign_in(clerk, clerk_id(app, "Clerk Zhou"))
        resident = app.test_client()
        sign_in(resident, residents(app)[0])
        before = dt.datetime.now(dt.UTC)
        request_id = _request(app, clerk)
        after = dt.datetime.now(dt.UTC)
        answer_by = dt.datetime.fromisoformat(clerk.get(f"/console/requests/{request_id}").json["answer_by"])
        assert before + dt.timedelta(minutes=12) <= answer_by <= after + dt.timedelta(minutes=12)

        before = dt.datetime.now(dt.UTC)
        answer = resident.post(f"/requests/{request_id}", data={"csrf": csrf_of(resident, "/requests"),
                                                                "decision": "approve", "fields": ["LNYD:name"]})
        after = dt.datetime.now(dt.UTC)
        assert answer.status_code == 303
        fetch_by = dt.datetime.fromisoformat(clerk.get(f"/console/requests/{request_id}").json["fetch_by"])
        assert before + dt.timedelta(minutes=9) <= fetch_by <= after + dt.timedelta(minutes=9)
    finally:
        clear_database(services(app).db.engine)
        services(app).db.dispose()


@pytest.fixture
def app(web_app):  # type: ignore[no-untyped-def]
    return in_english(web_app)  # these tests read the console's and the resident's English wording
