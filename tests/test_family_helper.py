"""Family helpers (亲友代办) through the API and the command line, on SQLite and PostgreSQL: a named helper shows the
person's code and answers their requests, every use in both histories, and the refusals (docs/without-a-smartphone.md).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from codeservice.accesslog.models import AccessLogEntry
from codeservice.cli.main import main
from codeservice.clients.service import add_api_client
from codeservice.consent.models import Office
from codeservice.helpers.models import FamilyHelper
from codeservice.identity.residents import add_resident
from sdk.citytime import CITY_TZ
from tests.conftest import clear_database, make_settings
from tests.test_api import post_verify, sign_in

PURPOSE = "elderly allowance application"
ITEMS = [{"type": "LNYD", "fields": ["age_over_60"]}]


def services(app):  # type: ignore[no-untyped-def]
    return app.extensions["citycode"]


@pytest.fixture
def world(web_app):  # type: ignore[no-untyped-def]
    """The app, a clerk's key of the demo office, the elder (the first demo resident, who holds LNYD) and her son."""
    with services(web_app).db.session() as db:
        office = db.scalars(select(Office).order_by(Office.id)).first()
        _, key = add_api_client(db, "Helper clerk", "clerk", office=office.id)
        son = add_resident(db, "李明").pid
    from codeservice.identity.residents import list_residents

    with services(web_app).db.session() as db:
        elder = list_residents(db)[0].pid
    return web_app, key, elder, son


def browser(app, pid: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    sign_in(client, pid)
    return client


def post(client, path: str, body=None):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1{path}", data=json.dumps(body) if body is not None else None,
                       content_type="application/json" if body is not None else None)


def ask(app, key: str, pid: str, **extra) -> str:  # type: ignore[no-untyped-def]
    code = services(app).issue_identity_code(pid)
    response = app.test_client().post("/api/v1/consent/requests", headers={"Authorization": f"Bearer {key}"},
                                      data=json.dumps({"code": code, "purpose": PURPOSE, "items": ITEMS, **extra}),
                                      content_type="application/json")
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def later(days: int) -> str:
    return (dt.datetime.now(CITY_TZ).date() + dt.timedelta(days=days)).isoformat()


def entries(app, subject: str) -> list[AccessLogEntry]:  # type: ignore[no-untyped-def]
    with services(app).db.session() as db:
        return list(db.scalars(select(AccessLogEntry).where(AccessLogEntry.subject == subject)
                               .order_by(AccessLogEntry.seq)))


def test_helper_shows_the_code_and_answers_a_request_and_both_histories_name_both(world) -> None:
    app, key, elder, son = world
    mother = browser(app, elder)
    added = post(mother, "/me/helpers", {"helper": son, "until": later(30)})
    assert added.status_code == 201 and added.json["status"] == "active" and added.json["helper_name"] == "李明"
    helper = browser(app, son)
    assert [g["resident"] for g in helper.get("/api/v1/me/helpers").json["helping"]] == [elder]
    shown = helper.get(f"/api/v1/me/helping/{elder}/code")
    assert shown.status_code == 200
    assert post_verify(helper, {"code": shown.json["code"], "scene": "service-window"}).json["subject"] == elder
    request_id = ask(app, key, elder)
    pending = helper.get(f"/api/v1/me/helping/{elder}/consent-requests").json["requests"]
    assert [r["id"] for r in pending] == [request_id]
    answered = post(helper, f"/me/helping/{elder}/consent-requests/{request_id}", {"decision": "approve"})
    assert answered.status_code == 200 and answered.json["status"] == "approved"
    about_elder = [(e.action, e.actor) for e in entries(app, elder)]
    about_son = [(e.action, e.actor) for e in entries(app, son)]
    assert ("helper_code", f"helper:{son}") in about_elder and ("helper_code", f"helper:{son}") in about_son
    assert ("approve", f"helper:{son}") in about_elder and ("approve", f"helper:{son}") in about_son
    son_approval = next(e for e in entries(app, son) if e.action == "approve")
    assert son_approval.what[0]["for"] == elder


def test_helper_approving_a_request_for_their_own_benefit_is_refused_helper_is_beneficiary(world) -> None:
    app, key, elder, son = world
    post(browser(app, elder), "/me/helpers", {"helper": son, "until": later(30)})
    helper = browser(app, son)
    for_son = ask(app, key, elder, beneficiary=son)
    refused = post(helper, f"/me/helping/{elder}/consent-requests/{for_son}", {"decision": "approve"})
    assert refused.status_code == 403 and refused.json["error"] == "helper_is_beneficiary"
    assert ("helper_answer", "refused: helper_is_beneficiary") in [(e.action, e.outcome) for e in entries(app, son)]
    still = browser(app, elder).get("/api/v1/me/consent-requests").json["requests"]
    assert [r["id"] for r in still] == [for_son]  # the resident herself may answer it
    refusal = post(helper, f"/me/helping/{elder}/consent-requests/{for_son}", {"decision": "refuse"})
    assert refusal.status_code == 200 and refusal.json["status"] == "refused"  # refusing is never for oneself
    unknown = app.test_client().post(
        "/api/v1/consent/requests", headers={"Authorization": f"Bearer {key}"}, content_type="application/json",
        data=json.dumps({"code": services(app).issue_identity_code(elder), "purpose": PURPOSE, "items": ITEMS,
                         "beneficiary": "nosuchresident00"}))
    assert unknown.status_code == 422 and unknown.json["error"] == "unknown_beneficiary"


def test_revoked_helper_is_refused_helper_revoked(world) -> None:
    app, _, elder, son = world
    mother = browser(app, elder)
    grant = post(mother, "/me/helpers", {"helper": son, "until": later(30)}).json
    ended = post(mother, f"/me/helpers/{grant['id']}/end")
    assert ended.status_code == 200 and ended.json["status"] == "ended"
    refused = browser(app, son).get(f"/api/v1/me/helping/{elder}/code")
    assert refused.status_code == 403 and refused.json["error"] == "helper_revoked"
    assert ("helper_code", "refused: helper_revoked") in [(e.action, e.outcome) for e in entries(app, elder)]


def test_expired_helper_is_refused_helper_expired(world) -> None:
    app, key, elder, son = world
    grant = post(browser(app, elder), "/me/helpers", {"helper": son, "until": later(1)}).json
    request_id = ask(app, key, elder)
    with services(app).db.session() as db:  # its end date passes
        db.execute(update(FamilyHelper).where(FamilyHelper.id == grant["id"])
                   .values(until=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    helper = browser(app, son)
    refused = post(helper, f"/me/helping/{elder}/consent-requests/{request_id}", {"decision": "approve"})
    assert refused.status_code == 403 and refused.json["error"] == "helper_expired"
    assert helper.get("/api/v1/me/helpers").json["helping"][0]["status"] == "expired"


def test_a_stranger_is_no_helper_and_bad_grants_are_refused(world) -> None:
    app, _, elder, son = world
    stranger = browser(app, son)
    assert stranger.get(f"/api/v1/me/helping/{elder}/code").json["error"] == "not_helper"
    mother = browser(app, elder)
    assert post(mother, "/me/helpers", {"helper": elder, "until": later(3)}).json["error"] == "invalid_helper"
    assert post(mother, "/me/helpers", {"helper": son, "until": later(-1)}).json["error"] == "invalid_until"
    assert post(mother, "/me/helpers", {"helper": son, "until": later(400)}).json["error"] == "invalid_until"
    assert post(mother, "/me/helpers", {"helper": "nosuchresident00", "until": later(3)}).status_code == 404
    assert post(mother, "/me/helpers", {"helper": son, "until": "soon"}).status_code == 400
    assert post(mother, "/me/helpers", {"helper": son, "until": later(3)}).status_code == 201
    assert post(mother, "/me/helpers", {"helper": son, "until": later(3)}).json["error"] == "helper_exists"
    assert post(stranger, "/me/helpers/000000000000000000000000/end").status_code == 404
    assert app.test_client().get("/api/v1/me/helpers").status_code == 401


def test_command_line_adds_lists_and_ends_a_helper(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "home", database_url)
    env = {"CITYCODE_HOME": str(settings.home), "CITYCODE_DATABASE_URL": settings.database_url}
    runner = CliRunner()
    elder = json.loads(runner.invoke(main, ["resident", "add", "--name", "王奶奶"], env=env).output)["id"]
    son = json.loads(runner.invoke(main, ["resident", "add", "--name", "王强"], env=env).output)["id"]
    added = runner.invoke(main, ["helper", "add", elder, son, "--until", later(10)], env=env)
    assert added.exit_code == 0, added.output
    grant = json.loads(added.output)
    assert grant["status"] == "active" and grant["resident_name"] == "王奶奶"
    listed = json.loads(runner.invoke(main, ["helper", "list", son], env=env).output)
    assert [g["id"] for g in listed["helping"]] == [grant["id"]] and listed["helpers"] == []
    ended = runner.invoke(main, ["helper", "end", elder, grant["id"]], env=env)
    assert ended.exit_code == 0 and json.loads(ended.output)["status"] == "ended"
    bad = runner.invoke(main, ["helper", "add", elder, elder, "--until", later(10)], env=env)
    assert bad.exit_code == 2 and json.loads(bad.stderr)["error"] == "invalid_helper"
    bad_day = runner.invoke(main, ["helper", "add", elder, son, "--until", "tomorrow"], env=env)
    assert bad_day.exit_code == 2
    from codeservice.services import Services

    built = Services(settings)
    clear_database(built.db.engine)
    built.db.dispose()


def csrf_of(client, path: str) -> str:  # type: ignore[no-untyped-def]
    import re

    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def test_pages_name_a_helper_who_acts_for_the_person_and_is_refused_once_ended(world) -> None:
    from tests.conftest import in_english

    app, key, elder, son = world
    in_english(app)
    mother = browser(app, elder)
    assert "Family helpers" in mother.get("/code").get_data(as_text=True)
    made = mother.post("/helpers", data={"csrf": csrf_of(mother, "/helpers"), "helper": son, "until": later(7)})
    assert made.status_code == 303
    assert 'data-status="active"' in mother.get("/helpers").get_data(as_text=True)
    request_id = ask(app, key, elder)
    helper = browser(app, son)
    page = helper.get(f"/helping/{elder}").get_data(as_text=True)
    assert "Acting for" in page and 'src="data:image/svg+xml;base64,' in page and f'data-request="{request_id}"' in page
    answered = helper.post(f"/helping/{elder}/requests/{request_id}",
                           data={"csrf": csrf_of(helper, "/helpers"), "decision": "approve"})
    assert answered.status_code == 303
    assert f'data-request="{request_id}"' not in helper.get(f"/helping/{elder}").get_data(as_text=True)
    for_son = ask(app, key, elder, beneficiary=son)
    refused = helper.post(f"/helping/{elder}/requests/{for_son}",
                          data={"csrf": csrf_of(helper, "/helpers"), "decision": "approve"})
    assert refused.status_code == 403 and "only the person can approve it" in refused.get_data(as_text=True)
    grant_id = helper.get("/api/v1/me/helpers").json["helping"][0]["id"]
    assert mother.post(f"/helpers/{grant_id}/end", data={"csrf": csrf_of(mother, "/helpers")}).status_code == 303
    ended = helper.get(f"/helping/{elder}")
    assert ended.status_code == 403 and "ended your help" in ended.get_data(as_text=True)
    bad = mother.post("/helpers", data={"csrf": csrf_of(mother, "/helpers"), "helper": elder, "until": later(7)})
    assert bad.status_code == 422 and "your own helper" in bad.get_data(as_text=True)


def test_helper_pages_are_chinese_by_default(world) -> None:
    app, _, elder, _ = world
    page = browser(app, elder).get("/helpers").get_data(as_text=True)
    assert "亲友代办" in page and "谁为我代办" in page
