"""The consented pull over HTTP, on each storage (SQLite, PostgreSQL) and state (in-process, Redis) combination.

Real identity codes, real API keys (the demo office's clerks and kiosk, given fresh keys), the demo residents
and their certificates: the first holds an elderly card (LNYD), the second a disability certificate (CJRZ).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import select, update

from codeservice.accesslog.models import AccessLogEntry
from codeservice.app import create_app
from codeservice.clients.models import ApiClient
from codeservice.clients.service import add_api_client, hash_key
from codeservice.consent import service as consent
from codeservice.consent.models import ConsentRequest
from codeservice.demo import DEMO_OFFICE
from codeservice.identity.models import Resident
from codeservice.identity.residents import list_residents
from codeservice.state import StateError
from sdk import TrustList, load_anchor
from sdk.sdjwt import verify_sd_jwt
from tests.conftest import clear_database, make_settings

PURPOSE = "elderly allowance application"


@dataclass
class World:
    app: Flask
    zhou: str
    sun: str
    kiosk: str
    auditor: str
    elder: str
    adult: str

    @property
    def services(self):  # type: ignore[no-untyped-def]
        return self.app.extensions["citycode"]

    def code(self, pid: str) -> str:
        return self.services.issue_identity_code(pid)

    def clerk(self, key: str, method: str, path: str, body=None):  # type: ignore[no-untyped-def]
        client = self.app.test_client()
        kwargs = {"headers": {"Authorization": f"Bearer {key}"}}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        return client.open(f"/api/v1{path}", method=method, **kwargs)

    def resident(self, pid: str):  # type: ignore[no-untyped-def]
        """A browser signed in as *pid* through the development sign-in."""
        client = self.app.test_client()
        page = client.get("/signin").get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        response = client.post("/signin/dev", data={"csrf": csrf, "resident": pid})
        assert response.status_code == 302
        return client

    def request(self, pid: str, items, key: str | None = None, purpose: str = PURPOSE, **extra) -> str:
        response = self.clerk(key or self.zhou, "POST", "/consent/requests",
                              {"code": self.code(pid), "purpose": purpose, "items": items, **extra})
        assert response.status_code == 201, response.json
        assert response.json["status"] == "pending" and set(response.json) == {"id", "status", "answer_by"}
        return str(response.json["id"])

    def log(self) -> list[AccessLogEntry]:
        with self.services.db.session() as s:
            return list(s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq)))

    def trust(self) -> TrustList:
        client = self.app.test_client()
        token = client.get("/api/v1/trust-list").get_data(as_text=True)
        anchor = load_anchor(client.get("/api/v1/trust-anchor").get_data())
        return TrustList.load(token, anchor)


def fresh_key(session, name: str) -> str:
    """Give a demo client a new key (the demo keeps none) and return it."""
    found = session.scalars(select(ApiClient).where(ApiClient.name == name, ApiClient.office_id == DEMO_OFFICE)).one()
    key = f"cc_{found.role[0]}_{secrets.token_urlsafe(32)}"
    found.key_hash = hash_key(key)
    return key


def build_world(app: Flask) -> World:
    with app.extensions["citycode"].db.session() as s:
        elder, adult = list_residents(s)[:2]
        keys = {name: fresh_key(s, name) for name in ("Clerk Zhou", "Clerk Sun", "Queue kiosk 1")}
        _, auditor = add_api_client(s, "City audit office", "auditor")
        return World(app, keys["Clerk Zhou"], keys["Clerk Sun"], keys["Queue kiosk 1"], auditor, elder.pid, adult.pid)


@pytest.fixture
def world(app) -> World:
    return build_world(app)


ELDER_ITEMS = [{"type": "LNYD", "fields": ["name", "birth_date", "age_over_60"]}]


def approve(world: World, pid: str, request_id: str, approve=None):  # type: ignore[no-untyped-def]
    body = {"decision": "approve"} if approve is None else {"decision": "approve", "approve": approve}
    return world.resident(pid).post(f"/api/v1/me/consent-requests/{request_id}", json=body)


# -- the flow ------------------------------------------------------------------------------------
def test_whole_flow_request_see_approve_fetch_verify_and_history(world):
    started = dt.datetime.now(dt.UTC)
    request_id = world.request(world.elder, ELDER_ITEMS, keep_minutes=20)

    seen = world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}")
    assert seen.status_code == 200
    assert seen.json["status"] == "pending" and seen.json["approved"] == [] and seen.json["fetch_by"] is None

    # The resident's phone: who asks, for what, which certificate and fields, how long they may keep it.
    phone = world.resident(world.elder)
    pending = phone.get("/api/v1/me/consent-requests")
    assert pending.status_code == 200 and pending.headers["Cache-Control"] == "no-store"
    [shown] = pending.json["requests"]
    assert shown["id"] == request_id and shown["status"] == "pending"
    assert shown["office"] == "Window 3, Central Service Hall" and shown["clerk"] == "Clerk Zhou"
    assert shown["purpose"] == PURPOSE and shown["keep_minutes"] == 20
    [item] = shown["items"]
    assert item["type"] == "LNYD" and item["held"] is True and item["type_name"].startswith("Elderly")
    assert [f["name"] for f in item["fields"]] == ["name", "birth_date", "age_over_60"]
    assert [f["label"] for f in item["fields"]] == ["Name", "Date of birth", "60 or older"]
    assert dt.datetime.fromisoformat(shown["answer_by"]) > started
    # Nobody else sees it.
    assert world.resident(world.adult).get("/api/v1/me/consent-requests").json["requests"] == []

    answered = phone.post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "approve"})
    assert answered.status_code == 200, answered.json
    assert answered.json["status"] == "approved" and answered.json["approved"] == [
        {"type": "LNYD", "fields": ["name", "birth_date", "age_over_60"]}]
    assert phone.get("/api/v1/me/consent-requests").json["requests"] == []

    status = world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json
    assert status["status"] == "approved" and status["fetch_by"] is not None
    assert status["approved"] == [{"type": "LNYD", "fields": ["name", "birth_date", "age_over_60"]}]
    assert "Li Wei" not in json.dumps(status) and "1952" not in json.dumps(status)  # names, never values

    fetched = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")
    assert fetched.status_code == 200, fetched.json
    assert fetched.headers["Cache-Control"] == "no-store"
    [cert] = fetched.json["certificates"]
    assert cert["type"] == "LNYD" and cert["fields"] == ["name", "birth_date", "age_over_60"]
    # The receiving system verifies it itself, with the published trust list.
    sd = verify_sd_jwt(cert["sd_jwt"], world.trust())
    assert sd.issuer == "civil-affairs"
    assert sd.disclosed == {"name": "Li Wei", "birth_date": "1952-03-14", "age_over_60": True}
    assert sd.claims["holder"] == world.elder and sd.claims["cert_id"] == cert["cert_id"]
    assert sd.claims["exp"] - sd.claims["iat"] == 20 * 60  # keep_minutes
    assert cert["sd_jwt"].count("~") == 4  # the issuer JWT and exactly three disclosures
    assert "male" not in json.dumps(fetched.json)  # gender was never asked for

    # The resident's history, newest first, in plain language; nobody else's page shows it.
    history = phone.get("/api/v1/me/access-log")
    assert history.status_code == 200
    entries = history.json["entries"]
    assert [e["action"] for e in entries] == ["fetch", "approve", "request"]
    assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)
    took = entries[0]["text"]
    assert took.startswith("Clerk Zhou, Window 3, Central Service Hall took your elderly preferential card")
    assert PURPOSE in took and entries[0]["who"] == "Clerk Zhou, Window 3, Central Service Hall"
    assert world.resident(world.adult).get("/api/v1/me/access-log").json["entries"] == []

    report = world.clerk(world.auditor, "GET", "/audit/verify")
    assert report.status_code == 200 and report.json["ok"] is True and report.json["entries"] == 3


def test_the_history_tells_the_time_in_city_time(world):
    """An entry made at 17:30 UTC happened at 01:30 the next morning in the city (UTC+8)."""
    late = dt.datetime(2026, 11, 23, 17, 30, 12, tzinfo=dt.UTC)
    with world.services.db.session() as s:
        zhou = s.scalars(select(ApiClient).where(ApiClient.name == "Clerk Zhou")).one()
        consent.create_request(s, zhou, resident=world.elder, purpose=PURPOSE, items=ELDER_ITEMS, now=late)
    entries = world.resident(world.elder).get("/api/v1/me/access-log").json["entries"]
    [asked] = [e for e in entries if e["action"] == "request"]
    assert asked["at"] == "2026-11-23T17:30:12.000000Z"  # stored and hashed in UTC
    assert asked["text"].endswith(", 01:30") and "17:30" not in asked["text"]
    with world.services.db.session() as s:
        [entry] = [e for e in s.scalars(select(AccessLogEntry)) if e.action == "request"]
        assert consent.sentence(entry, {}).endswith(", 01:30")
    assert consent.city_time("2026-11-23T15:59:00.000000Z").strftime("%Y-%m-%d %H:%M") == "2026-11-23 23:59"
    assert consent.city_time("2026-11-23T16:00:00.000000Z").strftime("%Y-%m-%d %H:%M") == "2026-11-24 00:00"


def test_a_refused_request_releases_nothing(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    refused = world.resident(world.elder).post(f"/api/v1/me/consent-requests/{request_id}",
                                               json={"decision": "refuse"})
    assert refused.status_code == 200 and refused.json["status"] == "refused" and refused.json["approved"] == []
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["status"] == "refused"
    fetched = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")
    assert fetched.status_code == 409 and fetched.json["error"] == "not_approved"
    again = approve(world, world.elder, request_id)
    assert again.status_code == 409 and again.json["error"] == "not_pending"
    actions = [(e.action, e.outcome) for e in world.log()]
    assert actions[1][0] == "refuse" and actions[2] == ("fetch", "refused: not_approved")
    assert not any(e.action == "fetch" and e.outcome == "released" for e in world.log())
    texts = [e["text"] for e in world.resident(world.elder).get("/api/v1/me/access-log").json["entries"]]
    assert texts[0].startswith("Clerk Zhou, Window 3, Central Service Hall tried to take")
    assert texts[1].startswith("You refused")


def test_a_partial_approval_releases_only_the_subset(world):
    asked = [{"type": "LNYD", "fields": ["name", "birth_date", "age_over_65", "age_over_60"]}]
    request_id = world.request(world.elder, asked)
    answered = approve(world, world.elder, request_id, [{"type": "LNYD", "fields": ["age_over_60"]}])
    assert answered.status_code == 200 and answered.json["approved"] == [{"type": "LNYD", "fields": ["age_over_60"]}]
    more = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch",
                       {"items": [{"type": "LNYD", "fields": ["age_over_60", "birth_date"]}]})
    assert more.status_code == 403 and more.json["error"] == "not_approved"
    other_type = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch",
                             {"items": [{"type": "CJRZ", "fields": ["name"]}]})
    assert other_type.status_code == 403
    fetched = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")
    assert fetched.status_code == 200
    [cert] = fetched.json["certificates"]
    assert cert["fields"] == ["age_over_60"]
    sd = verify_sd_jwt(cert["sd_jwt"], world.trust())
    assert sd.disclosed == {"age_over_60": True}
    body = json.dumps(fetched.json)
    assert "Li Wei" not in body and "1952" not in body
    refusals = [e.outcome for e in world.log() if e.action == "fetch"]
    assert refusals == ["refused: not_approved", "refused: not_approved", "released"]


def test_a_selection_within_the_approval_is_all_that_arrives(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    assert approve(world, world.elder, request_id).status_code == 200
    empty = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch", {"items": []})
    assert empty.status_code == 400  # and the one fetch is not used up by it
    fetched = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch",
                          {"items": [{"type": "LNYD", "fields": ["name"]}]})
    assert fetched.status_code == 200
    assert verify_sd_jwt(fetched.json["certificates"][0]["sd_jwt"], world.trust()).disclosed == {"name": "Li Wei"}


def test_an_unanswered_request_expires(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    phone = world.resident(world.elder)
    assert len(phone.get("/api/v1/me/consent-requests").json["requests"]) == 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=consent.ANSWER_MINUTES, seconds=1)
    with world.services.db.session() as s:
        assert consent.expire_overdue(s, now=later) == 1
        assert consent.expire_overdue(s, now=later) == 0  # logged once
    assert phone.get("/api/v1/me/consent-requests").json["requests"] == []
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["status"] == "expired"
    late = phone.post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "approve"})
    assert late.status_code == 409 and late.json["error"] == "not_pending"
    fetched = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")
    assert fetched.status_code == 409
    entries = phone.get("/api/v1/me/access-log").json["entries"]
    assert [e["action"] for e in entries] == ["fetch", "expire", "request"]
    assert "expired unanswered" in entries[1]["text"]


def test_the_answer_window_passing_expires_the_request_when_anyone_looks(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    with world.services.db.session() as s:
        s.execute(update(ConsentRequest).where(ConsentRequest.id == request_id)
                  .values(answer_by=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert world.resident(world.elder).get("/api/v1/me/consent-requests").json["requests"] == []
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["status"] == "expired"
    assert [e.action for e in world.log()].count("expire") == 1


@pytest.fixture
def windowed_world(tmp_path, database_url):  # type: ignore[no-untyped-def]
    """The app with CITYCODE_CONSENT_ANSWER_MINUTES=11 and CITYCODE_CONSENT_FETCH_MINUTES=7."""
    app = create_app(make_settings(tmp_path / "home", database_url, consent_answer_minutes=11,
                                   consent_fetch_minutes=7))
    try:
        yield build_world(app)
    finally:
        clear_database(app.extensions["citycode"].db.engine)
        app.extensions["citycode"].db.dispose()


def test_the_configured_answer_and_fetch_windows_are_used(windowed_world):
    world = windowed_world
    before = dt.datetime.now(dt.UTC)
    request_id = world.request(world.elder, ELDER_ITEMS)
    after = dt.datetime.now(dt.UTC)
    status = world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json
    answer_by = dt.datetime.fromisoformat(status["answer_by"])
    assert before + dt.timedelta(minutes=11) <= answer_by <= after + dt.timedelta(minutes=11)
    with world.services.db.session() as s:  # still pending when the default five minutes have passed
        assert consent.expire_overdue(s, now=before + dt.timedelta(minutes=consent.ANSWER_MINUTES, seconds=1)) == 0

    before = dt.datetime.now(dt.UTC)
    answered = approve(world, world.elder, request_id)
    after = dt.datetime.now(dt.UTC)
    assert answered.status_code == 200, answered.json
    fetch_by = dt.datetime.fromisoformat(answered.json["fetch_by"])
    assert before + dt.timedelta(minutes=7) <= fetch_by <= after + dt.timedelta(minutes=7)
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["fetch_by"] == answered.json[
        "fetch_by"]


def test_the_configured_answer_window_expires_requests(windowed_world):
    world = windowed_world
    request_id = world.request(world.elder, ELDER_ITEMS)
    with world.services.db.session() as s:
        made = s.get(ConsentRequest, request_id)
        created = consent._aware(made.created_at)
        assert consent.expire_overdue(s, now=created + dt.timedelta(minutes=10, seconds=59)) == 0
        assert consent.expire_overdue(s, now=created + dt.timedelta(minutes=11, seconds=1)) == 1
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["status"] == "expired"


def test_reading_the_access_log_expires_overdue_requests_as_the_history_page_does(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    with world.services.db.session() as s:
        s.execute(update(ConsentRequest).where(ConsentRequest.id == request_id)
                  .values(answer_by=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    phone = world.resident(world.elder)
    entries = phone.get("/api/v1/me/access-log").json["entries"]
    assert [e["action"] for e in entries] == ["expire", "request"]
    assert "expired unanswered" in entries[0]["text"]
    with world.services.db.session() as s:
        assert s.get(ConsentRequest, request_id).status == "expired"
    # The page and the API read the same: the expiry is logged once, whichever looks first or again.
    assert world.app.test_client().get("/history").status_code == 302  # (the page needs the session)
    page = phone.get("/history").get_data(as_text=True)
    assert page.count('data-action="expire"') == 1
    assert [e["action"] for e in phone.get("/api/v1/me/access-log").json["entries"]] == ["expire", "request"]


def test_a_second_fetch_is_refused(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    assert approve(world, world.elder, request_id).status_code == 200
    assert world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch").status_code == 200
    second = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")
    assert second.status_code == 409 and second.json["error"] == "already_fetched"
    assert "certificates" not in second.json
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["status"] == "fetched"
    assert [e.outcome for e in world.log() if e.action == "fetch"] == ["released", "refused: already_fetched"]


def test_another_clerk_of_the_same_office_cannot_fetch_or_see(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    assert approve(world, world.elder, request_id).status_code == 200
    assert world.clerk(world.sun, "GET", f"/consent/requests/{request_id}").status_code == 404
    taken = world.clerk(world.sun, "POST", f"/consent/requests/{request_id}/fetch")
    assert taken.status_code == 403 and taken.json["error"] == "other_clerk"
    [refusal] = [e for e in world.log() if e.action == "fetch"]
    assert refusal.actor_label == "Clerk Sun, Window 3, Central Service Hall" and refusal.subject == world.elder
    assert refusal.outcome == "refused: other_clerk"
    # The kiosk of that office is no clerk at all.
    assert world.clerk(world.kiosk, "POST", f"/consent/requests/{request_id}/fetch").status_code == 403
    # The clerk who asked still can, once.
    assert world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch").status_code == 200


def test_a_fetch_after_the_window_is_refused(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=consent.FETCH_MINUTES, seconds=5)
    with world.services.db.session() as s:
        consent.decide(s, world.elder, request_id, approve=ELDER_ITEMS, now=earlier)
    late = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")
    assert late.status_code == 410 and late.json["error"] == "window_closed"
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["status"] == "approved"
    assert [e.outcome for e in world.log() if e.action == "fetch"] == ["refused: window_closed"]


def test_unknown_and_foreign_requests_are_not_found(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    for path in ("/consent/requests/nope", "/consent/requests/" + "x" * 300, "/consent/requests/a%00b",
                 "/consent/requests/%E2%80%AE"):
        assert world.clerk(world.zhou, "GET", path).status_code == 404
        assert world.resident(world.elder).post(f"/api/v1/me{path.replace('consent/', 'consent-')}",
                                                json={"decision": "refuse"}).status_code == 404
    nul = world.clerk(world.zhou, "POST", "/consent/requests/a%00b/fetch")
    assert nul.status_code == 404 and world.log()[-1].what == [{"request": "a?b"}]
    assert world.clerk(world.zhou, "GET", "/nothing%00here").status_code == 404
    fetched = world.clerk(world.zhou, "POST", "/consent/requests/nope/fetch")
    assert fetched.status_code == 404 and fetched.json["error"] == "not_found"
    assert world.log()[-1].outcome == "refused: not_found" and world.log()[-1].subject is None
    # The second resident cannot answer the first resident's request.
    foreign = approve(world, world.adult, request_id)
    assert foreign.status_code == 404
    assert world.clerk(world.zhou, "GET", f"/consent/requests/{request_id}").json["status"] == "pending"


# -- concurrency -----------------------------------------------------------------------------------
def race(n: int, action):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = action(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_sixteen_threads_racing_a_fetch_get_the_data_once(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    assert approve(world, world.elder, request_id).status_code == 200
    responses = race(16, lambda i: world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch"))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 15}, statuses
    assert all(r.json["error"] == "already_fetched" for r in responses if r.status_code == 409)
    assert [e.outcome for e in world.log() if e.action == "fetch"].count("released") == 1
    assert world.clerk(world.auditor, "GET", "/audit/verify").json["ok"] is True


def test_sixteen_threads_racing_approve_and_refuse_one_wins(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    phones = [world.resident(world.elder) for _ in range(16)]

    def decide(i: int):  # type: ignore[no-untyped-def]
        body = {"decision": "approve"} if i % 2 else {"decision": "refuse"}
        return phones[i].post(f"/api/v1/me/consent-requests/{request_id}", json=body)

    responses = race(16, decide)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 15}, statuses
    [winner] = [r for r in responses if r.status_code == 200]
    decisions = [e.action for e in world.log() if e.action in ("approve", "refuse")]
    assert decisions == [{"approved": "approve", "refused": "refuse"}[winner.json["status"]]]
    fetched = world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")
    assert fetched.status_code == (200 if winner.json["status"] == "approved" else 409)


def test_threads_racing_a_decision_and_fetches_never_release_without_approval(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    phone = world.resident(world.elder)

    def act(i: int):  # type: ignore[no-untyped-def]
        if i == 0:
            return phone.post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "approve"})
        return world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch")

    responses = race(12, act)
    assert responses[0].status_code == 200
    released = [r for r in responses[1:] if r.status_code == 200]
    assert len(released) <= 1
    assert all(r.status_code == 409 for r in responses[1:] if r.status_code != 200)
    if not released:  # every fetch came before the approval: one more gets it, once
        assert world.clerk(world.zhou, "POST", f"/consent/requests/{request_id}/fetch").status_code == 200
    assert [e.outcome for e in world.log() if e.action == "fetch"].count("released") == 1
    seqs = {e.seq: e for e in world.log()}
    approve_seq = next(s for s, e in seqs.items() if e.action == "approve")
    release_seq = next(s for s, e in seqs.items() if e.outcome == "released")
    assert approve_seq < release_seq


def _fetch_in_process(settings, key: str, request_id: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    """One worker process with its own app on the same database and Redis."""
    app = create_app(settings, initialise=False)
    client = app.test_client()
    barrier.wait(timeout=120)
    response = client.post(f"/api/v1/consent/requests/{request_id}/fetch", headers={"Authorization": f"Bearer {key}"})
    results.put((response.status_code, response.get_json()))
    app.extensions["citycode"].db.dispose()


@pytest.mark.slow
def test_processes_racing_a_fetch_get_the_data_once(tmp_path, database_url, redis_url):
    settings = make_settings(tmp_path / "home", database_url, redis_url)
    app = create_app(settings)
    try:
        world = build_world(app)
        request_id = world.request(world.elder, ELDER_ITEMS)
        assert approve(world, world.elder, request_id).status_code == 200
        ctx = multiprocessing.get_context("spawn")
        n = 4
        barrier, results = ctx.Barrier(n), ctx.Queue()
        workers = [ctx.Process(target=_fetch_in_process, args=(settings, world.zhou, request_id, barrier, results))
                   for _ in range(n)]
        for w in workers:
            w.start()
        outcomes = [results.get(timeout=180) for _ in range(n)]
        for w in workers:
            w.join(timeout=60)
            assert w.exitcode == 0
        assert Counter(status for status, _ in outcomes) == {200: 1, 409: n - 1}, outcomes
        [body] = [b for status, b in outcomes if status == 200]
        assert verify_sd_jwt(body["certificates"][0]["sd_jwt"], world.trust()).disclosed["name"] == "Li Wei"
        assert [e.outcome for e in world.log() if e.action == "fetch"].count("released") == 1
    finally:
        clear_database(app.extensions["citycode"].db.engine)
        app.extensions["citycode"].db.dispose()


# -- rate limits -----------------------------------------------------------------------------------
def test_a_clerk_beyond_the_rate_gets_403_and_the_attempt_is_logged(world):
    with world.services.db.session() as s:
        slow, key = add_api_client(s, "Clerk Qian", "clerk", office=DEMO_OFFICE, rate_per_minute=3)
        slow_id = slow.id
    body = {"code": world.code(world.elder), "purpose": PURPOSE, "items": ELDER_ITEMS}
    for _ in range(3):
        assert world.clerk(key, "POST", "/consent/requests", body).status_code == 201
    fourth = world.clerk(key, "POST", "/consent/requests", body)
    assert fourth.status_code == 403 and fourth.json["error"] == "rate_limited"
    assert world.clerk(key, "GET", "/consent/requests/anything").status_code == 403
    limited = [e for e in world.log() if e.action == "rate_limited"]
    assert len(limited) == 2
    assert limited[0].outcome == "refused" and limited[0].actor == f"clerk:{slow_id}"
    assert limited[0].actor_label == "Clerk Qian, Window 3, Central Service Hall"
    assert limited[0].what == [{"method": "POST", "path": "/api/v1/consent/requests"}]
    assert [e.action for e in world.log()].count("request") == 3  # nothing was made on the fourth call
    # Other clerks have their own allowance.
    assert world.clerk(world.zhou, "GET", "/consent/requests/anything").status_code == 404


def test_a_device_beyond_the_rate_gets_403(world):
    with world.services.db.session() as s:
        _, key = add_api_client(s, "Queue kiosk 2", "device", office=DEMO_OFFICE, rate_per_minute=1)
    body = {"code": world.code(world.adult), "service": "business"}
    assert world.clerk(key, "POST", "/queue/tickets", body).status_code == 201
    second = world.clerk(key, "POST", "/queue/tickets", body)
    assert second.status_code == 403 and second.json["error"] == "rate_limited"
    assert world.log()[-1].action == "rate_limited"


def test_an_unreachable_state_store_is_503(world, monkeypatch):
    def down(key: str, window: float) -> int:
        raise StateError("state store unreachable: ConnectionError")

    monkeypatch.setattr(world.services.state, "count", down)
    response = world.clerk(world.zhou, "GET", "/consent/requests/anything")
    assert response.status_code == 503 and response.json["error"] == "state_unavailable"


# -- queue tickets (取号) -----------------------------------------------------------------------------
def test_a_kiosk_hands_out_numbers_and_the_window_calls_them(world):
    first = world.clerk(world.kiosk, "POST", "/queue/tickets", {"code": world.code(world.elder), "service": "business"})
    assert first.status_code == 201, first.json
    assert first.json["number"] == 1 and first.json["service"] == "business" and first.json["office"] == DEMO_OFFICE
    second = world.clerk(world.kiosk, "POST", "/queue/tickets",
                         {"code": world.code(world.adult), "service": "business"})
    assert second.json["number"] == 2
    other = world.clerk(world.kiosk, "POST", "/queue/tickets",
                        {"code": world.code(world.adult), "service": "social-security"})
    assert other.json["number"] == 1
    assert world.clerk(world.zhou, "POST", "/queue/next", {"service": "business"}).json["number"] == 1
    assert world.clerk(world.sun, "POST", "/queue/next", {"service": "business"}).json["number"] == 2
    empty = world.clerk(world.zhou, "POST", "/queue/next", {"service": "business"})
    assert empty.status_code == 204 and empty.get_data() == b""
    unknown = world.clerk(world.kiosk, "POST", "/queue/tickets", {"code": world.code(world.elder), "service": "x"})
    assert unknown.status_code == 422 and unknown.json["error"] == "unknown_service"
    refusal = world.log()[-1]
    assert (refusal.action, refusal.subject, refusal.outcome, refusal.what) == (
        "ticket", world.elder, "refused: unknown_service", [{"service": "x"}])
    forged = world.clerk(world.kiosk, "POST", "/queue/tickets", {"code": "CC1:garbage", "service": "business"})
    assert forged.status_code == 422 and forged.json["error"] == "code_refused"
    assert world.clerk(world.zhou, "POST", "/queue/tickets", {"code": "x", "service": "business"}).status_code == 403
    assert world.clerk(world.kiosk, "POST", "/queue/next", {"service": "business"}).status_code == 403
    texts = [e["text"] for e in world.resident(world.elder).get("/api/v1/me/access-log").json["entries"]]
    assert [t for t in texts if "gave you queue number" in t] == [t for t in texts if "queue number 1 (business)" in t]
    assert len(texts) == 2 and texts[0].startswith(
        "Queue kiosk 1, Window 3, Central Service Hall did not give you a queue number (x); "
        "refused: there is no such queue")


def test_a_refused_queue_ticket_is_in_the_log_the_auditor_reads(world):
    refused = world.clerk(world.kiosk, "POST", "/queue/tickets",
                          {"code": world.code(world.adult), "service": "passport photos"})
    assert refused.status_code == 422 and refused.json["error"] == "unknown_service"
    with world.services.db.session() as s:
        kiosk_id = s.scalars(select(ApiClient.id).where(ApiClient.name == "Queue kiosk 1")).one()
    [entry] = world.clerk(world.auditor, "GET", "/audit/log").json["entries"]
    assert entry["actor"] == f"device:{kiosk_id}"
    assert entry["actor_label"] == "Queue kiosk 1, Window 3, Central Service Hall"
    assert entry["office"] == DEMO_OFFICE and entry["subject"] == world.adult and entry["action"] == "ticket"
    assert entry["what"] == [{"service": "passport photos"}] and entry["purpose"] == "queue number"
    assert entry["outcome"] == "refused: unknown_service"
    assert world.clerk(world.auditor, "GET", "/audit/verify").json["ok"] is True


# -- bad input ---------------------------------------------------------------------------------------
BAD_BODIES = [
    (None, 415, "unsupported_media_type"),
    ("[]", 400, "invalid_body"),
    ({}, 400, "invalid_body"),
    ({"code": 1, "purpose": PURPOSE, "items": ELDER_ITEMS}, 400, "invalid_body"),
    ({"code": "x", "purpose": PURPOSE, "items": ELDER_ITEMS, "extra": 1}, 400, "invalid_body"),
    ({"code": "x", "purpose": PURPOSE, "items": []}, 400, "invalid_body"),
    ({"code": "x", "purpose": PURPOSE, "items": [{"type": ["LNYD"], "fields": ["name"]}]}, 400, "invalid_body"),
    ({"code": "x", "purpose": PURPOSE, "items": [{"type": "LNYD", "fields": [["name"]]}]}, 400, "invalid_body"),
    ({"code": "x", "purpose": PURPOSE, "items": [{"type": "LNYD", "fields": []}]}, 400, "invalid_body"),
    ({"code": "x", "purpose": PURPOSE, "items": ELDER_ITEMS * 2}, 422, "invalid_body"),  # JSON Schema cannot say it
    ({"code": "x", "purpose": PURPOSE, "items": ELDER_ITEMS, "keep_minutes": True}, 400, "invalid_body"),
    ({"code": "x", "purpose": PURPOSE, "items": ELDER_ITEMS, "keep_minutes": 0}, 400, "invalid_body"),
    ({"code": "x\x00", "purpose": PURPOSE, "items": ELDER_ITEMS}, 400, "invalid_body"),
    ({"code": "https://example.com", "purpose": PURPOSE, "items": ELDER_ITEMS}, 422, "code_refused"),
]


def test_a_bad_request_body_is_a_4xx_with_a_reason(world):
    client = world.app.test_client()
    headers = {"Authorization": f"Bearer {world.zhou}"}
    for body, status, error in BAD_BODIES:
        check_bad_body(client, headers, body, status, error)
    # Only the refused code is logged (it names nobody); bad input is no access to anyone's data.
    assert [(e.action, e.subject) for e in world.log()] == [("request", None)]
    request_id = world.request(world.elder, ELDER_ITEMS)
    fetch = f"/api/v1/consent/requests/{request_id}/fetch"
    for data in ("nope", "[]", '{"items": 1}', '{"items": [{"type": "LNYD"}]}', '{"other": 1}',
                 '{"items": [{"type": "LNYD", "fields": ["name"], "x": 1}]}', '{"items": NaN}'):
        response = client.post(fetch, data=data, headers=headers, content_type="application/json")
        assert response.status_code == 400 and "error" in response.json, data
    for data in ("", "{}", '{"service": 5}'):
        response = client.post("/api/v1/queue/next", data=data, headers=headers, content_type="application/json")
        assert 400 <= response.status_code < 500 and "error" in response.json, data
    phone = world.resident(world.elder)
    for data in ("", "[1]", '{"decision": null}', '{"decision": "approve", "approve": {"LNYD": 1}}'):
        response = phone.post(f"/api/v1/me/consent-requests/{request_id}", data=data, content_type="application/json")
        assert response.status_code == 400 and "error" in response.json, data
    assert phone.post(f"/api/v1/me/consent-requests/{request_id}", data="{}").status_code == 415
    assert client.get("/api/v1/consent/requests", headers=headers).status_code == 405


def check_bad_body(client, headers, body, status, error):  # type: ignore[no-untyped-def]
    if body is None:
        response = client.post("/api/v1/consent/requests", data="{}", headers=headers, content_type="text/plain")
    elif isinstance(body, str):
        response = client.post("/api/v1/consent/requests", data=body, headers=headers,
                               content_type="application/json")
    else:
        response = client.post("/api/v1/consent/requests", json=body, headers=headers)
    assert response.status_code == status and response.json["error"] == error, response.json


def test_refusals_by_the_service_are_logged_and_kept(world):
    code = world.code(world.elder)
    wrong_purpose = world.clerk(world.zhou, "POST", "/consent/requests",
                                {"code": code, "purpose": "curiosity", "items": ELDER_ITEMS})
    assert wrong_purpose.status_code == 403 and wrong_purpose.json["error"] == "purpose_not_allowed"
    wrong_type = world.clerk(world.zhou, "POST", "/consent/requests",
                             {"code": code, "purpose": PURPOSE, "items": [{"type": "HZ", "fields": ["name"]}]})
    assert wrong_type.status_code == 403 and wrong_type.json["error"] == "type_not_allowed"
    wrong_field = world.clerk(world.zhou, "POST", "/consent/requests",
                              {"code": code, "purpose": PURPOSE, "items": [{"type": "LNYD", "fields": ["salary"]}]})
    assert wrong_field.status_code == 422
    forged = world.clerk(world.zhou, "POST", "/consent/requests",
                         {"code": "CC1:" + "A" * 120, "purpose": PURPOSE, "items": ELDER_ITEMS})
    assert forged.status_code == 422 and forged.json["error"] == "code_refused"
    log = world.log()
    assert [(e.action, e.outcome) for e in log[:3]] == [
        ("request", "refused: purpose"), ("request", "refused: type_not_allowed"), ("request", "refused: invalid_body")]
    assert all(e.subject == world.elder for e in log[:3])
    # A code that does not verify names nobody: logged, but in no one's history.
    assert len(log) == 4 and log[3].outcome.startswith("refused: code ") and log[3].subject is None


def test_a_frozen_identity_cannot_be_asked_about_nor_answer(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    approved = world.request(world.elder, ELDER_ITEMS)
    phone = world.resident(world.elder)
    assert approve(world, world.elder, approved).status_code == 200
    with world.services.db.session() as s:
        s.execute(update(Resident).where(Resident.pid == world.elder).values(frozen=True))
    refused = world.clerk(world.zhou, "POST", "/consent/requests",
                          {"code": world.code(world.elder), "purpose": PURPOSE, "items": ELDER_ITEMS})
    assert refused.status_code == 422 and refused.json["error"] == "code_refused"
    assert "frozen" in refused.json["message"]
    assert world.log()[-1].subject == world.elder and world.log()[-1].outcome.startswith("refused: code suspended")
    answer = phone.post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "approve"})
    assert answer.status_code == 403 and answer.json["error"] == "frozen"
    # Approved before the freeze (perhaps on the lost phone): nothing is released.
    fetched = world.clerk(world.zhou, "POST", f"/consent/requests/{approved}/fetch")
    assert fetched.status_code == 403 and fetched.json["error"] == "identity_frozen"
    assert world.log()[-1].outcome == "refused: identity_frozen" and world.log()[-1].subject == world.elder
    assert world.log()[-1].action == "fetch" and world.log()[-1].what == [
        {"cert_id": world.log()[-1].what[0]["cert_id"], "type": "LNYD", "fields": ELDER_ITEMS[0]["fields"]}]
    assert [e.outcome for e in world.log()].count("refused: identity_frozen") == 1  # logged once
    assert phone.get("/api/v1/me/access-log").status_code == 403


def test_the_core_fetch_refuses_a_frozen_identity_whatever_the_path(world):
    """consent.fetch itself refuses, so the API, the console and any other caller cannot release."""
    approved = world.request(world.elder, ELDER_ITEMS)
    assert approve(world, world.elder, approved).status_code == 200
    with world.services.db.session() as s:
        s.execute(update(Resident).where(Resident.pid == world.elder).values(frozen=True))
    with world.services.db.session() as s:
        zhou = s.scalars(select(ApiClient).where(ApiClient.name == "Clerk Zhou")).one()
        with pytest.raises(consent.ConsentError) as refused:
            consent.fetch(s, world.services.keyring, zhou, approved)
    assert refused.value.reason == "identity_frozen" and refused.value.status == 403
    assert world.log()[-1].outcome == "refused: identity_frozen" and world.log()[-1].subject == world.elder
    with world.services.db.session() as s:
        assert s.get(ConsentRequest, approved).status == "approved"  # nothing was released, nothing used up
    with world.services.db.session() as s:
        s.execute(update(Resident).where(Resident.pid == world.elder).values(frozen=False))
    history = world.resident(world.elder).get("/api/v1/me/access-log").json["entries"]
    assert "tried to take" in history[0]["text"] and "your identity was frozen" in history[0]["text"]
    # Unfrozen within the window, the approval still stands: the clerk may fetch it once.
    assert world.clerk(world.zhou, "POST", f"/consent/requests/{approved}/fetch").status_code == 200


def test_resident_answers_are_checked(world):
    request_id = world.request(world.elder, ELDER_ITEMS)
    phone = world.resident(world.elder)
    url = f"/api/v1/me/consent-requests/{request_id}"
    for body, status in (({"decision": "maybe"}, 400), ({"decision": "refuse", "approve": ELDER_ITEMS}, 400), ({}, 400),
                         ({"decision": "approve", "approve": []}, 400),
                         ({"decision": "approve", "approve": [{"type": "LNYD", "fields": ["gender"]}]}, 422),
                         ({"decision": "approve", "approve": [{"type": "CJRZ", "fields": ["name"]}]}, 422),
                         ({"decision": "approve", "approve": [{"type": {"x": 1}, "fields": ["name"]}]}, 400),
                         ({"decision": "approve", "approve": [{"type": "LNYD", "fields": [{"x": 1}]}]}, 400)):
        response = phone.post(url, json=body)
        assert response.status_code == status, (body, response.json)
    assert world.app.test_client().get("/api/v1/me/consent-requests").status_code == 401
    assert world.app.test_client().post(url, json={"decision": "approve"}).status_code == 401
    assert world.app.test_client().get("/api/v1/me/access-log").status_code == 401
    # Still pending, still answerable.
    assert phone.post(url, json={"decision": "approve", "approve": [{"type": "LNYD", "fields": ["name"]}]}) \
        .status_code == 200


def test_a_request_for_a_certificate_the_resident_lacks_can_be_refused_not_approved(world):
    request_id = world.request(world.adult, [{"type": "LNYD", "fields": ["name"]}])  # the elderly allowance
    phone = world.resident(world.adult)
    [shown] = phone.get("/api/v1/me/consent-requests").json["requests"]
    assert shown["items"][0]["held"] is False
    answer = phone.post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "approve"})
    assert answer.status_code == 409 and answer.json["error"] == "not_held"
    assert phone.post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "refuse"}).status_code == 200


# -- who may read the log ------------------------------------------------------------------------------
def test_the_auditor_reads_and_verifies_the_log_and_nobody_else_does(world):
    for _ in range(3):
        world.request(world.elder, ELDER_ITEMS)
    page = world.clerk(world.auditor, "GET", "/audit/log?limit=2")
    assert page.status_code == 200 and [e["seq"] for e in page.json["entries"]] == [1, 2]
    assert page.json["next_after"] == 2
    entry = page.json["entries"][0]
    assert set(entry) == {"seq", "at", "actor", "actor_label", "office", "subject", "action", "what", "purpose",
                          "outcome", "prev_hash", "hash"}
    assert entry["subject"] == world.elder and entry["what"] == ELDER_ITEMS and entry["prev_hash"] == "0" * 64
    rest = world.clerk(world.auditor, "GET", "/audit/log?after=2&limit=2")
    assert [e["seq"] for e in rest.json["entries"]] == [3] and rest.json["next_after"] is None
    assert world.clerk(world.auditor, "GET", "/audit/log?limit=0").status_code == 400
    assert world.clerk(world.auditor, "GET", "/audit/log?after=-1").status_code == 400
    # seq is a 32-bit column: one past its largest value is refused before it reaches the database
    assert world.clerk(world.auditor, "GET", "/audit/log?after=2147483647").json["entries"] == []
    for past in ("2147483648", "999999999999", "9" * 40):
        refused = world.clerk(world.auditor, "GET", f"/audit/log?after={past}")
        assert refused.status_code == 400 and refused.json["error"] == "invalid_query", past
    assert world.clerk(world.auditor, "GET", "/audit/verify").json == {
        "ok": True, "entries": 3, "checkpoints": 0, "first_bad_seq": None, "problem": ""}
    for key in (world.zhou, world.kiosk):
        for path in ("/audit/log", "/audit/verify"):
            denied = world.clerk(key, "GET", path)
            assert denied.status_code == 403 and denied.json["error"] == "forbidden"
    assert world.app.test_client().get("/api/v1/audit/log").status_code == 401
    assert world.resident(world.elder).get("/api/v1/audit/log").status_code == 401
    # The auditor's key does not make requests.
    assert world.clerk(world.auditor, "POST", "/consent/requests", {}).status_code == 403

    with world.services.db.session() as s:
        s.execute(update(AccessLogEntry).where(AccessLogEntry.seq == 2).values(purpose="curiosity"))
    report = world.clerk(world.auditor, "GET", "/audit/verify").json
    assert report["ok"] is False and report["first_bad_seq"] == 2


def test_checkpoints_are_signed_as_the_log_grows(world, monkeypatch):
    from codeservice.accesslog import service as accesslog

    monkeypatch.setattr(accesslog, "CHECKPOINT_EVERY", 4)
    for _ in range(5):
        world.request(world.elder, ELDER_ITEMS)
    report = world.clerk(world.auditor, "GET", "/audit/verify").json
    assert report["ok"] is True and report["entries"] == 5 and report["checkpoints"] == 1
    with world.services.db.session() as s:
        s.delete(s.get(AccessLogEntry, 5))
        s.delete(s.get(AccessLogEntry, 4))
    report = world.clerk(world.auditor, "GET", "/audit/verify").json
    assert report["ok"] is False and report["first_bad_seq"] == 4
