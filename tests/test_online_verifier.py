"""Online verification takes its keys from a key source of public keys, never from the keyring's private side."""

from __future__ import annotations

import ast
import inspect
import json

import jwt
from sqlalchemy import select

import verifiers.online
from codeservice.accesslog.models import AccessLogEntry
from codeservice.certificates.models import CheckRecord
from codeservice.certificates.service import certificates_of, show_code
from codeservice.clients.service import add_api_client
from codeservice.identity.residents import list_residents
from codeservice.state import StateError
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.trustlist import KeyringKeys
from sdk import TrustList
from sdk.replay import MemoryReplayGuard
from tests.conftest import with_cluster
from tests.test_api import sign_in
from verifiers.online import FixedKeys, OnlineVerifier


def test_the_online_verifier_imports_nothing_that_holds_private_keys() -> None:
    tree = ast.parse(inspect.getsource(verifiers.online))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.split(".")[0] == "issuers"}


def test_a_code_verifies_online_against_a_fixed_trust_list_of_public_keys(trust: TrustList, make_code) -> None:
    online = OnlineVerifier(FixedKeys(trust), MemoryReplayGuard(), leeway=30)
    result = online.verify(make_code(), "service-window")
    assert result.accepted and result.kind == "id"


def test_after_a_rotation_the_keyring_source_trusts_the_new_key(keyring: Keyring, make_code) -> None:
    online = OnlineVerifier(KeyringKeys(keyring, validity=3600), MemoryReplayGuard(), leeway=30)
    assert online.verify(make_code(), "service-window").accepted
    keyring.rotate("city-id", grace=120)
    assert online.verify(make_code(), "service-window").accepted  # signed with the new key


def test_an_issuer_unknown_to_the_key_source_is_refused_as_unknown_key(tmp_path, trust: TrustList) -> None:
    other = Keyring(tmp_path / "other")
    other.initialise([IssuerInfo("city-id", "Another city's identity office", ("id",))])
    code = issue_code(other.signer("city-id"), "id", subject=b"0123456789", lifetime=60)
    result = OnlineVerifier(FixedKeys(trust), MemoryReplayGuard(), leeway=30).verify(code, "service-window")
    assert not result.accepted and result.reason.value == "unknown_key"


# -- POST /api/v1/verify: who learns what ----------------------------------------------------------------------
def _verify(client, body, key: str | None = None, header: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": header} if header is not None else {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/api/v1/verify", data=json.dumps(body), content_type="application/json", headers=headers)


def _first_resident(app) -> str:  # type: ignore[no-untyped-def]
    with app.extensions["citycode"].db.session() as s:
        return list_residents(s)[0].pid


def test_an_anonymous_caller_learns_only_whether_a_code_is_accepted_and_why(app) -> None:  # type: ignore[no-untyped-def]
    services = app.extensions["citycode"]
    pid = _first_resident(app)
    client = app.test_client()
    accepted = _verify(client, {"code": services.issue_identity_code(pid), "scene": "service-window"})
    assert accepted.status_code == 200 and accepted.json == {"accepted": True, "reason": "ok"}
    assert pid not in accepted.get_data(as_text=True)
    code = services.issue_identity_code(pid)
    assert _verify(client, {"code": code, "scene": "bus"}).json == {"accepted": True, "reason": "ok"}
    replayed = _verify(client, {"code": code, "scene": "bus"})
    assert replayed.json == {"accepted": False, "reason": "replayed"}  # whom it names stays unsaid, refused too
    assert _verify(client, {"code": "https://example.com"}).json == {"accepted": False, "reason": "not_a_citycode"}
    with services.db.session() as s:  # a certificate's show code: not its holder, nor a field
        cert = next(c for c in certificates_of(s, pid) if c.type_code == "LNYD")
        shown = show_code(s, services.keyring, cert, ["age_over_60", "name"], lifetime=60)
    body = _verify(client, {"code": shown})
    assert body.json == {"accepted": True, "reason": "ok"}


def test_a_verifier_key_learns_the_whole_result(app) -> None:  # type: ignore[no-untyped-def]
    services = app.extensions["citycode"]
    pid = _first_resident(app)
    with services.db.session() as s:
        _, key = add_api_client(s, "Ticket office", "verifier", ["LNYD"], ["age_over_60"])
    answer = _verify(app.test_client(), {"code": services.issue_identity_code(pid)}, key)
    assert answer.status_code == 200 and answer.json["accepted"] is True
    assert answer.json["subject"] == pid and answer.json["kind"] == "id" and answer.json["issuer"] == "city-id"


def test_verify_refuses_a_caller_that_names_itself_with_a_bad_or_foreign_key(app) -> None:  # type: ignore[no-untyped-def]
    services = app.extensions["citycode"]
    client = app.test_client()
    code = services.issue_identity_code(_first_resident(app))
    with services.db.session() as s:
        _, admin = add_api_client(s, "City administration", "admin")
    for header in ("Bearer cc_v_not-a-key", "Basic abc", "Bearer "):
        refused = _verify(client, {"code": code}, header=header)
        assert refused.status_code == 401 and refused.json["error"] == "unauthorised", header
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="citycode"'
    foreign = _verify(client, {"code": code}, admin)
    assert foreign.status_code == 403 and foreign.json == {
        "error": "forbidden", "message": "this endpoint takes a verifier key, or none"}


@with_cluster
def test_a_verifier_key_over_its_rate_gets_429_with_retry_after_at_verify_and_checks(app) -> None:  # type: ignore[no-untyped-def]
    services = app.extensions["citycode"]
    client = app.test_client()
    code = services.issue_identity_code(_first_resident(app))
    with services.db.session() as s:
        made, key = add_api_client(s, "Busy gate", "verifier", ["LNYD"], ["age_over_60"], rate_per_minute=2)
        verifier_id = made.id
    assert _verify(client, {"code": code}, key).status_code == 200
    assert _verify(client, {"code": code}, key).status_code == 200
    limited = _verify(client, {"code": code}, key)
    assert limited.status_code == 429 and limited.json["error"] == "rate_limited"
    assert limited.headers["Retry-After"].isdigit() and 1 <= int(limited.headers["Retry-After"]) <= 60
    check = client.post("/api/v1/checks", headers={"Authorization": f"Bearer {key}"},
                        json={"code": code, "type": "LNYD", "predicate": "age_over_60", "purpose": "senior ticket"})
    assert check.status_code == 429 and check.json["error"] == "rate_limited" and "Retry-After" in check.headers
    assert _verify(client, {"code": code}).json == {"accepted": True, "reason": "ok"}  # anonymous: not this key's
    with services.db.session() as s:
        limited_entries = list(s.scalars(select(AccessLogEntry).where(AccessLogEntry.action == "rate_limited")))
    seen = [(e.actor, e.outcome, e.subject) for e in limited_entries]
    assert seen == [(f"verifier:{verifier_id}", "refused", None)] * 2
    assert [e.what[0]["path"] for e in limited_entries] == ["/api/v1/verify", "/api/v1/checks"]


class _BrokenCounter:
    """A state store whose counters cannot be reached."""

    def count(self, key: str, window: float) -> int:
        raise StateError("state store unreachable: ConnectionError")


def test_a_verifier_key_is_refused_when_its_rate_cannot_be_counted(app) -> None:  # type: ignore[no-untyped-def]
    services = app.extensions["citycode"]
    code = services.issue_identity_code(_first_resident(app))
    with services.db.session() as s:
        _, key = add_api_client(s, "Gate", "verifier", ["LNYD"], [])
    services.__dict__["state"] = _BrokenCounter()
    refused = _verify(app.test_client(), {"code": code}, key)
    assert refused.status_code == 503 and refused.json["error"] == "state_unavailable"


def test_every_yes_no_check_states_a_purpose_that_the_resident_reads(app) -> None:  # type: ignore[no-untyped-def]
    services = app.extensions["citycode"]
    pid = _first_resident(app)
    client = app.test_client()
    with services.db.session() as s:
        _, key = add_api_client(s, "Laoshan ticket office", "verifier", ["LNYD"], ["age_over_60"])
    headers = {"Authorization": f"Bearer {key}"}
    asked = {"code": services.issue_identity_code(pid), "type": "LNYD", "predicate": "age_over_60"}
    silent = client.post("/api/v1/checks", headers=headers, json=asked)
    assert silent.status_code == 400 and silent.json["error"] == "invalid_body" and "purpose" in silent.json["message"]
    answered = client.post("/api/v1/checks", headers=headers, json={**asked, "purpose": "free entry for over-60s"})
    assert answered.status_code == 200 and answered.json["answer"] is True
    receipt = jwt.decode(answered.json["receipt"], options={"verify_signature": False})
    assert receipt["purpose"] == "free entry for over-60s"
    with services.db.session() as s:
        record = s.scalars(select(CheckRecord)).one()
        assert record.purpose == "free entry for over-60s"
        entry = s.scalars(select(AccessLogEntry).where(AccessLogEntry.action == "check")).one()
        assert entry.purpose == "free entry for over-60s" and entry.subject == pid
    phone = app.test_client()
    sign_in(phone, pid)
    history = phone.get("/api/v1/me/access-log").json["entries"]
    assert history[0]["purpose"] == "free entry for over-60s"
    assert "Laoshan ticket office checked whether you hold" in history[0]["text"]
    assert "for free entry for over-60s" in history[0]["text"]
