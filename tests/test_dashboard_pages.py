"""The dashboards' pages without a browser (Flask's test client, SQLite and PostgreSQL): sign-in with the right
key only, CSRF, sign-out, the page JSON taking the operator from the session, clear JSON errors for a bad day,
figure or reference. tests/test_browser_dashboards.py draws the charts in Chromium."""

from __future__ import annotations

import re
from typing import Any

import pytest

from codeservice.clients.service import add_api_client
from tests.conftest import in_english


@pytest.fixture
def site(web_app):  # type: ignore[no-untyped-def]
    app = in_english(web_app)
    services = app.extensions["citycode"]
    with services.db.session() as s:
        keys = {"metro": add_api_client(s, "Metro staff", "operator", operator="qd-metro")[1],
                "bus": add_api_client(s, "Bus staff", "operator", operator="qd-bus")[1],
                "auditor": add_api_client(s, "Data office", "auditor")[1],
                "gate": add_api_client(s, "Gate 1", "device", operator="qd-metro")[1]}
    return {"app": app, "keys": keys, "services": services}


def csrf_of(client: Any, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page[:400]
    return match.group(1)


def sign_in(client: Any, kind: str, key: str) -> Any:
    return client.post(f"/{kind}/sign-in", data={"csrf": csrf_of(client, f"/{kind}/sign-in"), "key": key})


def test_a_visitor_is_sent_to_the_sign_in_page_and_the_page_json_answers_401(site) -> None:
    client = site["app"].test_client()
    for kind in ("operator", "city"):
        for path in (f"/{kind}", f"/{kind}/screen"):
            response = client.get(path)
            assert response.status_code == 302 and response.headers["Location"].endswith(f"/{kind}/sign-in")
        response = client.get(f"/{kind}/data/day?day=2026-12-01")
        assert response.status_code == 401 and response.get_json()["error"] == "unauthorised"
    assert client.get("/operator/clearing.csv?day=2026-12-01").status_code == 401


@pytest.mark.parametrize("kind, wrong", [("operator", "auditor"), ("operator", "gate"), ("operator", "nonsense"),
                                         ("city", "metro")])
def test_a_key_of_another_role_or_of_no_operator_is_refused_with_a_message(site, kind, wrong) -> None:
    client = site["app"].test_client()
    response = sign_in(client, kind, site["keys"].get(wrong, "cc_x_not-a-key"))
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/{kind}/sign-in?error=key")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "That is not an active" in page
    assert client.get(f"/{kind}").status_code == 302


def test_sign_in_without_the_pages_csrf_token_is_refused(site) -> None:
    client = site["app"].test_client()
    client.get("/operator/sign-in")
    response = client.post("/operator/sign-in", data={"key": site["keys"]["metro"]})
    assert response.status_code == 400
    assert client.get("/operator").status_code == 302


def test_the_operator_is_the_sessions_never_the_urls_and_sign_out_ends_it(site) -> None:
    client = site["app"].test_client()
    assert sign_in(client, "operator", site["keys"]["metro"]).headers["Location"].endswith("/operator")
    page = client.get("/operator?operator=qd-bus")
    assert page.status_code == 200 and "Qingdao Metro" in page.get_data(as_text=True)
    for part in ("day", "gates", "clearing"):
        body = client.get(f"/operator/data/{part}?day=2026-12-01&operator=qd-bus").get_json()
        assert body["operator"] == "qd-metro"
    assert client.get("/city/data/state").status_code == 401  # an operator is not the data office
    csrf = csrf_of(client, "/operator")
    assert client.post("/operator/sign-out", data={"csrf": csrf}).status_code == 302
    assert client.get("/operator/data/day?day=2026-12-01").status_code == 401


def test_bad_input_to_the_page_json_gets_a_clear_json_error(site) -> None:
    client = site["app"].test_client()
    sign_in(client, "operator", site["keys"]["metro"])
    cases = [("/operator/data/day?day=yesterday", 400, "invalid_day"), ("/operator/data/day", 400, "invalid_day"),
             ("/operator/data/day?day=1999-12-31", 422, "day_out_of_range"),
             ("/operator/data/day?day=2026-12-01&against=forever", 400, "invalid_against"),
             ("/operator/data/secrets?day=2026-12-01", 404, "not_found"),
             ("/operator/clearing.csv?day=2026-12-01", 404, "not_cleared")]
    for path, status, error in cases:
        response = client.get(path)
        assert (response.status_code, response.get_json()["error"]) == (status, error), path


def test_the_data_office_signs_in_with_an_auditor_key_and_reads_the_citys_figures(site) -> None:
    client = site["app"].test_client()
    sign_in(client, "city", site["keys"]["auditor"])
    page = client.get("/city")
    assert page.status_code == 200 and "City data office dashboard" in page.get_data(as_text=True)
    state = client.get("/city/data/state").get_json()
    assert {"access_log", "status_lists", "keys"} <= set(state)
    day = client.get("/city/data/day?day=2026-12-01").get_json()
    assert day["day"] == "2026-12-01" and len(day["days"]) == 7
    assert client.get("/operator/data/day?day=2026-12-01").status_code == 401


def test_the_full_screen_refresh_is_bounded(site) -> None:
    client = site["app"].test_client()
    sign_in(client, "operator", site["keys"]["metro"])
    for asked, used in (("1", 2), ("45", 45), ("99999", 3600), ("soon", 30)):
        page = client.get(f"/operator/screen?refresh={asked}").get_data(as_text=True)
        assert f'data-refresh="{used}"' in page and 'data-screen="1"' in page
