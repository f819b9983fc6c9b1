"""A gate's SDK refreshes its trust list and status lists from the service when online, and keeps what
it has (saying status_stale in time) when it is not."""

from __future__ import annotations

import threading
import time

import pytest
from werkzeug.serving import make_server

from codeservice.certificates.service import certificates_of, set_status, show_code
from codeservice.clients.service import add_api_client
from codeservice.identity.residents import list_residents
from sdk import Reason, TrustList, Verifier, load_anchor
from sdk.sync import GateSync
from verifiers.scenes import SCENES


@pytest.fixture
def served(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_gate_sees_suspension_and_reinstatement_after_refresh_and_keeps_lists_offline(served):
    app, base = served
    services = app.extensions["citycode"]
    anchor = load_anchor(services.keyring.anchor_public_pem())
    verifier = Verifier(TrustList.load(services.trust_list_token(), anchor))
    sync = GateSync(verifier, base, anchor)
    first = sync.refresh(force=True)
    assert not first.errors and first.status_lists["civil-affairs"] == "updated"

    with services.db.session() as s:
        elder = list_residents(s)[0].pid
        card = certificates_of(s, elder)[0]
        code = show_code(s, services.keyring, card, ["age_over_60"], lifetime=60)
    scene = SCENES["scenic-elderly"]
    assert verifier.verify(code, scene).accepted

    with services.db.session() as s:
        set_status(s, card.id, "suspended")
    assert sync.refresh().status_lists.get("civil-affairs") is None  # ttl not yet passed: nothing fetched
    assert sync.refresh(force=True).status_lists["civil-affairs"] == "updated"
    assert Verifier(verifier.trust, status=verifier.status).verify(code, scene).reason is Reason.SUSPENDED

    with services.db.session() as s:
        set_status(s, card.id, "valid")
    sync.refresh(force=True)
    assert Verifier(verifier.trust, status=verifier.status).verify(code, SCENES["inspection"]).accepted

    offline = GateSync(verifier, "http://127.0.0.1:1", anchor).refresh(force=True)
    assert offline.errors and offline.status_lists["civil-affairs"] == "kept"
    later = time.time() + 2 * 3600
    result = verifier.verify(code, SCENES["inspection"], at=later)  # inspection allows one hour
    assert result.reason in (Reason.STATUS_STALE, Reason.EXPIRED)
    stale = Verifier(verifier.trust, status=verifier.status, leeway=10_000).verify(code, SCENES["inspection"],
                                                                                 at=later)
    assert stale.reason is Reason.STATUS_STALE and stale.status_age and stale.status_age >= 7200


def test_gate_sees_a_revocation_made_through_the_api_after_refresh_and_it_stays_revoked(served):
    app, base = served
    services = app.extensions["citycode"]
    anchor = load_anchor(services.keyring.anchor_public_pem())
    verifier = Verifier(TrustList.load(services.trust_list_token(), anchor))
    sync = GateSync(verifier, base, anchor)
    assert not sync.refresh(force=True).errors
    with services.db.session() as s:
        card = certificates_of(s, list_residents(s)[0].pid)[0]
        code = show_code(s, services.keyring, card, ["age_over_60"], lifetime=60)
        _, admin = add_api_client(s, "Civil affairs administrator", "admin")
    inspection = SCENES["inspection"]  # re-scannable: the same code is checked before and after
    assert verifier.verify(code, inspection).accepted

    api = app.test_client()
    headers = {"Authorization": f"Bearer {admin}"}
    revoked = api.post(f"/api/v1/admin/certificates/{card.id}/status", json={"status": "revoked"}, headers=headers)
    assert revoked.status_code == 200 and revoked.json["status"] == "revoked", revoked.data
    assert verifier.verify(code, inspection).accepted  # offline, the gate cannot know before it refreshes
    assert sync.refresh(force=True).status_lists["civil-affairs"] == "updated"
    result = verifier.verify(code, inspection)
    assert result.reason is Reason.REVOKED and not result.accepted and result.status_age is not None
    assert result.cert_id == card.id and result.issuer == "civil-affairs"

    reinstated = api.post(f"/api/v1/admin/certificates/{card.id}/status", json={"status": "valid"},
                          headers=headers)
    assert reinstated.status_code == 409 and reinstated.json["error"] == "conflict"  # revoked for good
    sync.refresh(force=True)
    assert verifier.verify(code, inspection).reason is Reason.REVOKED


def test_a_forged_list_from_the_network_is_not_taken(served):
    app, base = served
    services = app.extensions["citycode"]
    anchor = load_anchor(services.keyring.anchor_public_pem())
    verifier = Verifier(TrustList.load(services.trust_list_token(), anchor))
    answers = {"trust-list": b"eyJhbGciOiJub25lIn0.e30.", "status": b"garbage"}
    sync = GateSync(verifier, base, anchor, fetch=lambda url: answers["trust-list" if "trust" in url else "status"])
    report = sync.refresh(force=True)
    assert report.trust_list == "kept" and len(report.errors) >= 2
    assert verifier.status.get("civil-affairs") is None
