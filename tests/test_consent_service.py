"""The one consent service that the JSON API and the clerk's console are adapters over: its rules hold when it is
called without Flask, on each storage and state combination."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from codeservice.accesslog import service as accesslog
from codeservice.accesslog.models import AccessLogEntry, AuditCheckpoint
from codeservice.clients.models import ApiClient
from codeservice.consent.models import ConsentRequest
from codeservice.consent.service import CodeRefused, ConsentError
from codeservice.services import Services
from tests.test_consent_api import ELDER_ITEMS, PURPOSE, World, build_world


@pytest.fixture
def world(app) -> World:
    return build_world(app)


def _clerk(services: Services, name: str = "Clerk Zhou") -> ApiClient:
    with services.db.session() as s:
        clerk = s.scalars(select(ApiClient).where(ApiClient.name == name)).one()
        s.expunge(clerk)
        return clerk


def _log(services: Services) -> list[AccessLogEntry]:
    with services.db.session() as s:
        return list(s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq)))


def test_a_refused_code_is_logged_and_committed_before_the_refusal_is_raised(world):
    services = world.services
    with pytest.raises(CodeRefused) as refused:
        services.consent.request(_clerk(services), code="CC1:NOT-A-CODE", purpose=PURPOSE, items=ELDER_ITEMS,
                                 keep_minutes=30)
    assert refused.value.reason == "code_refused" and refused.value.status == 400
    assert refused.value.refusal.startswith("not_a_citycode") or refused.value.refusal.startswith("malformed")
    [entry] = _log(services)
    assert entry.action == "request" and entry.outcome.startswith("refused: code ")


def test_another_clerks_request_is_not_found_for_the_clerk_asking(world):
    services = world.services
    made = services.consent.request(_clerk(services), code=world.code(world.elder), purpose=PURPOSE,
                                    items=ELDER_ITEMS, keep_minutes=30)
    assert services.consent.clerk_request(_clerk(services), made.id, lambda _, r: r.status) == "pending"
    with pytest.raises(ConsentError) as other:
        services.consent.clerk_request(_clerk(services, "Clerk Sun"), made.id, lambda _, r: r.status)
    assert other.value.reason == "not_found" and other.value.status == 404


def test_beyond_its_allowance_a_clerk_is_refused_and_the_attempt_is_logged(world):
    services = world.services
    clerk = _clerk(services)
    clerk.rate_per_minute = 2
    for _ in range(2):
        services.consent.check_rate(clerk, method="POST", path="/api/v1/consent/requests")
    with pytest.raises(ConsentError) as limited:
        services.consent.check_rate(clerk, method="POST", path="/api/v1/consent/requests\x00")
    assert limited.value.reason == "rate_limited" and limited.value.status == 403
    [entry] = _log(services)
    assert entry.action == "rate_limited" and entry.what == [{"method": "POST", "path": "/api/v1/consent/requests?"}]


def test_the_checkpoint_is_signed_after_the_step_commits_and_a_failing_one_does_not_undo_the_step(world,
                                                                                                   monkeypatch):
    services = world.services
    monkeypatch.setattr(accesslog, "CHECKPOINT_EVERY", 2)
    clerk = _clerk(services)
    first = services.consent.request(clerk, code=world.code(world.elder), purpose=PURPOSE, items=ELDER_ITEMS,
                                     keep_minutes=30)  # entry 1: no checkpoint due
    # entry 2: due, signed over the committed chain
    services.consent.answer(world.elder, first.id, None, lambda _db, answered: answered)
    with services.db.session() as s:
        [checkpoint] = s.scalars(select(AuditCheckpoint))
        assert checkpoint.seq == 2 and checkpoint.hash == s.get(AccessLogEntry, 2).hash

    def broken(self, session):  # type: ignore[no-untyped-def]
        raise RuntimeError("the audit key cannot sign now")

    monkeypatch.setattr(Services, "checkpoint_if_due", broken)
    services.consent.request(clerk, code=world.code(world.elder), purpose=PURPOSE, items=ELDER_ITEMS,
                             keep_minutes=30)  # entry 3
    with pytest.raises(RuntimeError):
        services.consent.request(clerk, code=world.code(world.elder), purpose=PURPOSE, items=ELDER_ITEMS,
                                 keep_minutes=30)  # entry 4 is due: the checkpoint fails after the commit
    with services.db.session() as s:
        assert len(list(s.scalars(select(ConsentRequest)))) == 3
    assert [e.seq for e in _log(services)] == [1, 2, 3, 4]
