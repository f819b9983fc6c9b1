"""The dashboards (/operator, /city) in a real headless Chromium, against the real service (`citycode serve`).

The service is tests/test_browser.py's (its embedded defaults: SQLite in its home). The test process opens the
same home and writes a generated operating day (two days ago) of two operators through the gates' upload path
(`ingest_records`) and clears it; the keys are made through the service layer, as `citycode client add` does.
Every chart's data is read back with `echarts.getInstanceByDom(el).getOption()` and compared with SQL counts
made here on the service's database. Screenshots go to test-artifacts/dashboards/ (gitignored).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from codeservice.clients.service import add_api_client
from codeservice.config import Settings
from codeservice.consent.models import ConsentRequest
from codeservice.demo import DEMO_COMPANY, _uscc
from codeservice.services import Services
from codeservice.transit.clearing import run_clearing
from sdk.citytime import service_day
from tests import test_browser as base
from tests.test_clearing import Generator, transit_key_of_old
from tests.test_dashboard_api import upload

# Browser tests like the others; one group, so that under `pytest -n 2 --dist loadgroup` (scripts/test) the
# module's tests share one service and one generated day on one worker.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_dashboards")]

service = base.service
browser = base.browser

ARTIFACTS = base.ROOT / "test-artifacts" / "dashboards"
SCREEN = {"width": 1920, "height": 1080}
DESKTOP = {"width": 1440, "height": 1000}
HOURS = [(4 + i) % 24 for i in range(24)]
OPERATOR_CHARTS = ("taps", "trips", "busiest", "cards", "refusals")
CITY_CHARTS = ("checks", "consent-outcome", "consent-office", "accesslog", "lists")
DASHBOARD_API = ("/api/v1/dashboard/operator/day", "/api/v1/dashboard/operator/gates",
                 "/api/v1/dashboard/operator/clearing", "/api/v1/dashboard/city/day", "/api/v1/dashboard/city/state",
                 "/api/v1/dashboard/city/points")
CONSENT_STATUSES = ("approved", "approved", "refused", "expired", "pending", "fetched")
CST = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def world(service: base.Service) -> Iterator[dict[str, Any]]:
    """The service's own database and keyring, a generated day of qd-metro and qd-bus (cleared), and keys of
    both operators and of an auditor."""
    services = Services(Settings.from_env({"CITYCODE_HOME": str(service.home)}))
    transit_key_of_old(services)
    now = dt.datetime.now(CST).timestamp()
    day = dt.date.fromisoformat(service_day(now)) - dt.timedelta(days=2)
    gen = Generator(day, seed=712, services=services)
    gen.metro_day(riders=120)
    gen.bus_day(rides=150)
    before = Generator(day - dt.timedelta(days=7), seed=1130, services=services)
    before.metro_day(riders=40)
    upload(services, gen.records, now)
    upload(services, before.records, now)
    with services.db.session() as s:
        for operator in gen.records:
            run_clearing(s, operator, day)
        keys = {name: add_api_client(s, f"{name} staff", "operator", operator=name)[1]
                for name in ("qd-metro", "qd-bus", "laoshan")}
        keys["auditor"] = add_api_client(s, "Data office", "auditor")[1]
        clerk, keys["clerk"] = add_api_client(s, "Clerk Li", "clerk", office="central-hall-w3")
        keys["verifier"] = add_api_client(s, "Market inspector", "verifier", ["SPJY", "YYZZ"], [])[1]
        # the data office's day: consent requests of today, one a status (written as the consent service does)
        moment = dt.datetime.now(dt.UTC)
        for n, status in enumerate(CONSENT_STATUSES):
            s.add(ConsentRequest(id=f"dash{n:028d}", resident=f"resident{n}", clerk_id=clerk.id,
                                 office_id="central-hall-w3", purpose="elderly allowance application",
                                 items=[{"type": "LNYD", "fields": ["name"]}], status=status, created_at=moment,
                                 answer_by=moment + dt.timedelta(minutes=5), keep_minutes=30))
    # yes/no checks through the API, as a market inspector asks them
    stranger = _uscc("91370200MA3C8N2K2")
    for n in range(9):
        subject, kind = [(DEMO_COMPANY, "SPJY"), (DEMO_COMPANY, "YYZZ"), (stranger, "SPJY")][n % 3]
        body = {"subject": subject, "type": kind, "purpose": "licence check at the service hall"}
        request = urllib.request.Request(
            service.url + "/api/v1/checks", method="POST", data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {keys['verifier']}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield {"services": services, "day": day, "gen": gen, "keys": keys, "url": service.url}


def sql(world: dict[str, Any], statement: str, **params: Any) -> list[tuple[Any, ...]]:
    with world["services"].db.session() as s:
        return [tuple(row) for row in s.execute(text(statement), params).all()]


def taps_per_hour(world: dict[str, Any], operator: str, day: dt.date) -> list[int]:
    # SQLite keeps the UTC wall clock; the city (Asia/Shanghai) is UTC+8 all year
    rows = dict(sql(world, "SELECT CAST(strftime('%H', at, '+8 hours') AS INTEGER), COUNT(*) FROM gate_records "
                           "WHERE operator_id = :op AND service_day = :day GROUP BY 1",
                    op=operator, day=day.isoformat()))
    return [rows.get(h, 0) for h in HOURS]


def records_csv_lines(world: dict[str, Any], day: dt.date) -> int:
    """The CSV's lines: a header and one a trip."""
    return 1 + int(sql(world, "SELECT COUNT(*) FROM trips WHERE operator_id = 'qd-metro' AND service_day = :d",
                       d=day.isoformat())[0][0])


def chart_data(page: Any, chart: str) -> list[Any]:
    return page.evaluate("""id => echarts.getInstanceByDom(document.getElementById('chart-' + id))
                                     .getOption().series.map(s => ({id: s.id, name: s.name, data: s.data}))""", chart)


def option(page: Any, chart: str) -> dict[str, Any]:
    return page.evaluate("id => echarts.getInstanceByDom(document.getElementById('chart-' + id)).getOption()", chart)


def new_page(browser: Any, world: dict[str, Any], locale: str = "en-US", viewport: dict[str, int] = DESKTOP) -> Any:
    ctx = browser.new_context(viewport=viewport, base_url=world["url"], locale=locale)
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    errors: list[str] = []
    # script errors and refusals (a style or script the CSP refuses); failed loads are named by their URL
    page.on("console", lambda message: errors.append(message.text) if message.type == "error"
            and not message.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    page.errors = errors  # what the page's scripts logged as errors (a refused style or script under the CSP too)
    return page


def sign_in(page: Any, kind: str, key: str) -> None:
    page.goto(f"/{kind}/sign-in")
    page.fill("#api-key", key)
    page.click("#signin-button")
    page.wait_for_url(f"**/{kind}")
    loaded(page)


def loaded(page: Any, after: int = 0) -> None:
    page.wait_for_function(f"() => Number(document.getElementById('dashboard').dataset.refreshes) > {after}")


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_visitor_not_signed_in_is_sent_to_each_sign_in_page_and_a_wrong_key_is_refused(browser, world) -> None:
    page = new_page(browser, world)
    for kind in ("operator", "city"):
        page.goto(f"/{kind}")
        assert page.url.endswith(f"/{kind}/sign-in")
        assert page.request.get(f"/{kind}/data/day?day=2026-01-01").status == 401
    page.goto("/operator/sign-in")
    for wrong in ("not-a-key", world["keys"]["auditor"], world["keys"]["clerk"]):
        page.fill("#api-key", wrong)
        page.click("#signin-button")
        page.wait_for_url("**/operator/sign-in?error=key")
        assert "not an active operator" in page.locator("#signin-error").inner_text()
    page.goto("/city/sign-in")
    page.fill("#api-key", world["keys"]["qd-metro"])
    page.click("#signin-button")
    page.wait_for_url("**/city/sign-in?error=key")
    assert "auditor" in page.locator("#signin-error").inner_text()
    shot(page, "city-sign-in-refused")
    # a sign-in without the page's CSRF token is refused
    assert page.request.post("/operator/sign-in", form={"key": world["keys"]["qd-metro"]}).status == 400
    page.context.close()


def test_the_operators_charts_show_the_generated_day_as_the_database_counts_it(browser, world) -> None:
    page = new_page(browser, world)
    sign_in(page, "operator", world["keys"]["qd-metro"])
    assert page.locator("#day").input_value() == service_day(time.time())  # today's operating day by default
    day = world["day"]
    page.goto(f"/operator?day={day.isoformat()}")
    loaded(page)
    assert page.locator("#owner").inner_text() == "Qingdao Metro"

    taps, reference = chart_data(page, "taps")
    assert taps["data"] == taps_per_hour(world, "qd-metro", day)
    assert reference["data"] == taps_per_hour(world, "qd-metro", day - dt.timedelta(days=7))
    assert sum(taps["data"]) > 0 and sum(reference["data"]) > 0
    trips = dict(sql(world, "SELECT CAST(strftime('%H', started_at, '+8 hours') AS INTEGER), COUNT(*) FROM trips "
                            "WHERE operator_id = 'qd-metro' AND service_day = :d GROUP BY 1", d=day.isoformat()))
    assert chart_data(page, "trips")[0]["data"] == [trips.get(h, 0) for h in HOURS]
    busiest = sql(world, "SELECT station, COUNT(*) FROM gate_records WHERE operator_id = 'qd-metro' AND"
                         " service_day = :d AND accepted AND station IS NOT NULL GROUP BY station"
                         " ORDER BY 2 DESC, 1 LIMIT 10",
                  d=day.isoformat())
    shown = option(page, "busiest")
    assert list(zip(shown["yAxis"][0]["data"], shown["series"][0]["data"], strict=True)) == list(reversed(busiest))
    cards = dict(sql(world, "SELECT COALESCE(card_type, 'unknown'), COUNT(*) FROM gate_records WHERE operator_id ="
                            " 'qd-metro' AND service_day = :d AND accepted GROUP BY 1", d=day.isoformat()))
    assert {item["code"]: item["value"] for item in chart_data(page, "cards")[0]["data"]} == cards
    assert {item["name"] for item in chart_data(page, "cards")[0]["data"]} <= {"adult", "student", "elderly",
                                                                                 "disabled", "card type unknown"}
    refusals = dict(sql(world, "SELECT reason, COUNT(*) FROM gate_records WHERE operator_id = 'qd-metro' AND"
                               " service_day = :d AND NOT accepted GROUP BY 1", d=day.isoformat()))
    assert refusals and {item["code"]: item["value"] for item in chart_data(page, "refusals")[0]["data"]} == refusals
    assert option(page, "refusals")["yAxis"][0]["data"] == ["code already used"]

    # each chart has a text alternative naming its figures
    label = page.locator("#chart-refusals").get_attribute("aria-label") or ""
    assert f"code already used {refusals['replayed']}" in label
    assert page.locator("#table-taps tbody tr").count() == 24

    # gates, records waiting, the statement with its CSV and SHA-256
    gates = dict(sql(world, "SELECT gate_id, COUNT(*) FROM gate_records WHERE operator_id = 'qd-metro' AND"
                            " service_day = :d GROUP BY 1", d=day.isoformat()))
    rows = page.locator("#gates-table tbody tr")
    assert {rows.nth(i).get_attribute("data-gate"): int(rows.nth(i).locator("td").nth(1).inner_text())
            for i in range(rows.count())} == gates
    assert page.locator("#records-waiting").inner_text() == "0"
    ((digest, records),) = sql(world, "SELECT digest, records FROM clearing_statements WHERE operator_id = 'qd-metro'"
                                      " AND service_day = :d", d=day.isoformat())
    assert page.locator("#st-sha256").inner_text() == digest
    assert page.locator("#st-records").inner_text() == str(records)
    csv = page.request.get(page.locator("#st-csv").get_attribute("href") or "")
    assert csv.status == 200 and csv.text().count("\n") == records_csv_lines(world, day)
    assert hashlib.sha256(csv.body()).hexdigest() == digest
    shot(page, "operator-generated-day")
    assert page.errors == []
    page.context.close()


def test_a_demo_operator_with_no_records_today_sees_every_chart_empty_and_can_sign_out(browser, world) -> None:
    page = new_page(browser, world)
    sign_in(page, "operator", world["keys"]["laoshan"])  # the demo scenic site: today's operating day, no taps
    today = service_day(time.time())
    assert page.locator("#day").input_value() == today
    assert sql(world, "SELECT COUNT(*) FROM gate_records WHERE operator_id = 'laoshan'") == [(0,)]
    assert all(v == 0 for v in chart_data(page, "taps")[0]["data"]) and len(chart_data(page, "taps")[0]["data"]) == 24
    for chart in OPERATOR_CHARTS:
        assert page.locator(f"#empty-{chart}").inner_text() == "No figures for this day."
    assert page.locator("#empty-clearing").is_visible() and page.locator("#statement").is_hidden()
    assert page.locator("#taps-total").inner_text() == "0"
    shot(page, "operator-demo-empty")
    page.click("#sign-out")
    page.wait_for_url("**/operator/sign-in")
    page.goto("/operator")
    assert page.url.endswith("/operator/sign-in")
    page.context.close()


def test_a_gate_silent_for_over_an_hour_is_red_with_the_word_offline(browser, world) -> None:
    page = new_page(browser, world)
    sign_in(page, "operator", world["keys"]["qd-bus"])
    page.goto(f"/operator?day={world['day'].isoformat()}")
    loaded(page)
    # the day's records were uploaded minutes ago: every gate is reporting; move one gate's uploads back two hours
    gate = sql(world, "SELECT gate_id FROM gate_records WHERE operator_id = 'qd-bus' ORDER BY gate_id LIMIT 1")[0][0]
    with world["services"].db.session() as s:
        s.execute(text("UPDATE gate_records SET received_at = datetime(received_at, '-3 hours') WHERE gate_id = :g"),
                  {"g": gate})
        run_clearing(s, "qd-bus", world["day"])  # a cleared day's gates are read from what its clearing kept
    page.reload()
    loaded(page)
    row = page.locator(f'#gates-table tr[data-gate="{gate}"]')
    assert row.get_attribute("data-state") == "offline" and "offline" in row.inner_text()
    assert row.evaluate("r => getComputedStyle(r.cells[0]).color") == "rgb(176, 0, 32)"
    assert page.locator("#gates-offline").inner_text() == "1"
    shot(page, "operator-gate-offline")
    page.context.close()


def test_operator_a_cannot_see_operator_bs_data_through_the_page_its_json_or_any_dashboard_endpoint(
        browser, world) -> None:
    day = world["day"].isoformat()
    page = new_page(browser, world)
    sign_in(page, "operator", world["keys"]["qd-metro"])
    for part in ("day", "gates", "clearing"):
        for query in (f"day={day}", f"day={day}&operator=qd-bus", f"day={day}&operator_id=qd-bus"):
            body = page.request.get(f"/operator/data/{part}?{query}").json()
            assert body["operator"] == "qd-metro"
    page.goto(f"/operator?day={day}&operator=qd-bus")
    loaded(page)
    assert page.locator("#owner").inner_text() == "Qingdao Metro"
    assert sum(chart_data(page, "taps")[0]["data"]) == sum(taps_per_hour(world, "qd-metro", world["day"]))
    assert page.request.get(f"/operator/clearing.csv?day={day}&operator=qd-bus").text() == page.request.get(
        f"/operator/clearing.csv?day={day}").text()
    # the city's figures are not the operator's: neither through the page nor its JSON
    assert page.request.get(f"/city/data/day?day={day}").status == 401
    page.goto("/city")
    assert page.url.endswith("/city/sign-in")
    key = world["keys"]["qd-metro"]
    bus_taps = sum(taps_per_hour(world, "qd-bus", world["day"]))
    for endpoint in DASHBOARD_API:
        for query in (f"day={day}", f"day={day}&operator=qd-bus"):
            response = page.request.get(f"{endpoint}?{query}", headers={"Authorization": f"Bearer {key}"})
            body = response.json()
            if endpoint.startswith("/api/v1/dashboard/operator/"):
                assert response.status == 200 and body["operator"] == "qd-metro"
                assert "qd-bus" not in response.text()
                assert body.get("taps_total", 0) != bus_taps or bus_taps == 0
            else:
                assert response.status in (403, 404) and body["error"] in ("forbidden", "not_found")
            # the page's session is no key for the API
            assert page.request.get(f"{endpoint}?{query}").status in (401, 404)
    page.context.close()


def test_full_screen_refreshes_by_itself_and_shows_the_new_figures(browser, world) -> None:
    page = new_page(browser, world, viewport=SCREEN)
    sign_in(page, "operator", world["keys"]["qd-bus"])
    day = world["day"]
    page.goto(f"/operator/screen?day={day.isoformat()}&refresh=2")
    loaded(page)
    assert page.evaluate("document.documentElement.classList.contains('dash-screen')")
    before = sum(chart_data(page, "taps")[0]["data"])
    assert page.locator("#taps-total").inner_text() == str(before)
    refreshed = page.locator("#refreshed").inner_text()
    assert len(refreshed) == 8 and refreshed[2] == ":"  # HH:MM:SS in city time
    # the dashboard fills the screen, in large type
    box = page.locator("#dashboard").bounding_box()
    assert box is not None and box["width"] >= 1900 and box["height"] >= 1070
    assert page.evaluate("document.documentElement.scrollHeight") <= SCREEN["height"]  # no scrolling on the wall
    assert float(page.locator("#dashboard").evaluate("d => parseFloat(getComputedStyle(d).fontSize)")) >= 20
    page.screenshot(path=str(ARTIFACTS / "operator-screen-before.png"))
    gen = Generator(day, seed=99, services=world["services"])
    gen.bus_day(rides=7)
    upload(world["services"], gen.records, dt.datetime.now(CST).timestamp())
    count = int(page.locator("#dashboard").get_attribute("data-refreshes") or 0)
    page.wait_for_function(f"() => Number(document.getElementById('taps-total').textContent) === {before + 7}",
                           timeout=20_000)
    assert int(page.locator("#dashboard").get_attribute("data-refreshes") or 0) > count
    assert sum(chart_data(page, "taps")[0]["data"]) == before + 7 == sum(taps_per_hour(world, "qd-bus", day))
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    page.screenshot(path=str(ARTIFACTS / "operator-screen-after.png"))
    page.context.close()


def test_the_print_view_shows_charts_as_images_without_navigation(browser, world) -> None:
    page = new_page(browser, world)
    sign_in(page, "operator", world["keys"]["qd-metro"])
    page.goto(f"/operator?day={world['day'].isoformat()}")
    loaded(page)
    page.emulate_media(media="print")
    assert page.locator("header.site").is_hidden() and page.locator(".dash-nav").is_hidden()
    assert page.locator("#dash-controls").is_hidden()
    for chart in OPERATOR_CHARTS:
        assert page.locator(f"#chart-{chart}").is_hidden()
        image = page.locator(f"#print-{chart}")
        assert image.is_visible() and (image.get_attribute("src") or "").startswith("data:image/png")
        assert image.evaluate("i => i.naturalWidth") > 0
    line = page.locator("#print-line").inner_text()
    assert world["day"].isoformat() in line and page.locator("#printed-at").inner_text()[:4].isdigit()
    assert "Qingdao Metro" in page.locator("h1").inner_text()
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    (ARTIFACTS / "operator-print.pdf").write_bytes(pdf)
    shot(page, "operator-print")
    page.context.close()


def test_the_data_office_sees_the_citys_figures_as_the_database_counts_them(browser, world) -> None:
    page = new_page(browser, world)
    sign_in(page, "city", world["keys"]["auditor"])
    today = dt.datetime.now(CST).date()
    assert page.locator("#day").input_value() == today.isoformat()
    entries = sql(world, "SELECT COUNT(*) FROM access_log")[0][0]
    assert page.locator("#log-entries").inner_text() == str(entries)
    growth = chart_data(page, "accesslog")[0]["data"]
    assert len(growth) == 7 and growth[-1] == entries >= 9  # the service began today: every entry is today's
    lists = option(page, "lists")
    issuers = lists["xAxis"][0]["data"]
    assert {"civil-affairs", "market-regulation", "city-transit"} <= set(issuers)
    departments = [r[0] for r in sql(world, "SELECT id FROM departments ORDER BY id")]
    assert issuers[:len(departments)] == departments
    checks = sql(world, "SELECT t.department_id, c.answer, COUNT(*) FROM check_records c JOIN cert_types t ON"
                        " t.code = c.cert_type GROUP BY 1, 2")
    drawn = {s["id"]: s["data"] for s in chart_data(page, "checks")}
    assert checks and drawn == {f"{dept}:{'yes' if answer else 'no'}": [0] * 6 + [n] for dept, answer, n in checks}
    outcome = dict(sql(world, "SELECT status, COUNT(*) FROM consent_requests GROUP BY 1"))
    assert outcome["approved"] == 2
    assert {d["code"]: d["value"] for d in chart_data(page, "consent-outcome")[0]["data"]} == outcome
    assert {d["name"] for d in chart_data(page, "consent-outcome")[0]["data"]} >= {"approved", "refused"}
    per_office = sql(world, "SELECT o.name, c.status, COUNT(*) FROM consent_requests c JOIN offices o ON"
                            " o.id = c.office_id GROUP BY 1, 2")
    offices = option(page, "consent-office")
    drawn_office = {(office, s["id"]): n for s in offices["series"]
                    for office, n in zip(offices["yAxis"][0]["data"], s["data"], strict=True) if n}
    assert drawn_office == {(office, status): n for office, status, n in per_office}
    keys = page.locator("#keys-table tbody tr")
    assert keys.count() >= 3
    # the panels another branch reports: drawn when there, a clear empty state when not
    for chart in ("shows", "points"):
        available = page.locator(f"#chart-{chart}").get_attribute("data-available")
        if available == "0":
            assert page.locator(f"#empty-{chart}").is_visible()
    shot(page, "city-demo")
    assert all("/city/data/points?" in e for e in page.errors), page.errors  # 404 until dash-data is merged
    page.context.close()


LANGUAGES = [("zh-CN", "zh-Hans", "运营方看板", "刷码次数"), ("bo", "bo", None, None),
             ("en-US", "en", "Operator’s dashboard", "Taps")]


@pytest.mark.parametrize("locale, lang, title, taps", LANGUAGES)
def test_the_dashboards_speak_chinese_by_default_and_tibetan_and_english(browser, world, locale, lang, title,
                                                                          taps) -> None:
    page = new_page(browser, world, locale=locale)
    sign_in(page, "operator", world["keys"]["qd-metro"])
    page.goto(f"/operator?day={world['day'].isoformat()}")
    loaded(page)
    assert page.locator("html").get_attribute("lang") == lang
    heading = page.locator("h1").inner_text()
    series = chart_data(page, "taps")[0]["name"]
    axis = option(page, "taps")["xAxis"][0]["name"]
    if title is not None:
        assert heading.startswith(title) and series == taps
    else:  # Tibetan: the script's own block, not the English source
        assert any("\u0f00" <= ch <= "\u0fff" for ch in heading) and any("\u0f00" <= ch <= "\u0fff" for ch in series)
        assert any("\u0f00" <= ch <= "\u0fff" for ch in axis)
    reason = option(page, "refusals")["yAxis"][0]["data"][0]
    assert (reason == "code already used") == (lang == "en")
    shot(page, f"operator-{lang}")
    page.goto("/city")  # not signed in on the city's dashboard: its sign-in page, in the same language
    assert page.url.endswith("/city/sign-in") and page.locator("html").get_attribute("lang") == lang
    page.context.close()


def test_the_city_screen_refreshes_by_itself_with_a_new_check(browser, world) -> None:
    page = new_page(browser, world, viewport=SCREEN)
    sign_in(page, "city", world["keys"]["auditor"])
    page.goto("/city?screen=1&refresh=2")
    loaded(page)
    assert page.evaluate("document.documentElement.scrollHeight") <= SCREEN["height"]
    before = sum(sum(s["data"]) for s in chart_data(page, "checks"))
    body = {"subject": DEMO_COMPANY, "type": "YYZZ", "purpose": "licence check at the service hall"}
    response = page.request.post("/api/v1/checks", data=json.dumps(body), headers={
        "Authorization": f"Bearer {world['keys']['verifier']}", "Content-Type": "application/json"})
    assert response.status == 200
    page.wait_for_function("""n => echarts.getInstanceByDom(document.getElementById('chart-checks')).getOption()
                                     .series.reduce((a, s) => a + s.data.reduce((x, y) => x + y, 0), 0) === n""",
                           arg=before + 1, timeout=20_000)
    count = sql(world, "SELECT COUNT(*) FROM check_records")[0][0]
    assert sum(sum(s["data"]) for s in chart_data(page, "checks")) == count
    page.screenshot(path=str(ARTIFACTS / "city-screen.png"))
    page.context.close()


def test_the_city_page_draws_shows_audit_and_service_points_when_the_service_reports_them(browser, world) -> None:
    """The contract of the figures another branch adds (city/day ``shows``, city/state ``audit``, city/points):
    the page's JSON is extended in the browser (a route) and the page draws exactly those figures."""
    page = new_page(browser, world)
    sign_in(page, "city", world["keys"]["auditor"])
    shows = [{"department": "market-regulation", "department_name": "City Market Regulation Bureau",
              "show": [0, 1, 2, 3, 4, 5, 6], "pull": [6, 5, 4, 3, 2, 1, 0]}]
    audit = {"last": {"at": "2026-12-07T08:00:00Z", "ok": True, "entries_checked": 42, "last_seq": 42,
                      "reason": None}, "runs_7d": 3}
    hours = [f"{h:02d}:00" for h in range(24)]
    points = {"day": "2026-12-08", "hours": hours, "services": [
        {"service": "oxygen", "service_name": "Free oxygen", "quota_per_day": 2, "overdraws": 1,
         "points": [{"point": "p1", "point_name": "Gesar Square", "per_hour": [1] * 24, "total": 24},
                    {"point": "p2", "point_name": "Bus station", "per_hour": [0] * 23 + [5], "total": 5}]}]}

    def extend(route: Any, field: str, value: Any) -> None:
        body = route.fetch().json()
        body[field] = value
        route.fulfill(json=body)

    page.route("**/city/data/day?*", lambda route: extend(route, "shows", shows))
    page.route("**/city/data/state*", lambda route: extend(route, "audit", audit))
    page.route("**/city/data/points?*", lambda route: route.fulfill(json=points))
    page.reload()
    loaded(page)
    drawn = {s["id"]: s["data"] for s in chart_data(page, "shows")}
    assert drawn == {"market-regulation:show": shows[0]["show"], "market-regulation:pull": shows[0]["pull"]}
    assert page.locator("#empty-shows").is_hidden()
    drawn = {s["id"]: s["data"] for s in chart_data(page, "points")}
    assert drawn == {"oxygen:p1": [1] * 24, "oxygen:p2": [0] * 23 + [5]}
    assert option(page, "points")["xAxis"][0]["data"] == hours
    assert "Free oxygen · Gesar Square 24 2 1" in (page.locator("#chart-points").get_attribute("aria-label") or "")
    assert page.locator("#audit-last").inner_text().startswith("the log verified")
    assert page.locator("#audit-runs").inner_text() == "3"
    shot(page, "city-with-shows-audit-points")
    page.context.close()
