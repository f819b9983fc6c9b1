"""The consented pull at a service window in a real headless Chromium, against the real service (`citycode serve`).

Two pages in one browser, each in its own context (own cookies): the resident's phone, signed in as the first
demo resident (who holds the elderly card LNYD), and the clerk's console on a desktop, signed in as Clerk Zhou of
the demo office. The test reads the resident's identity code from a screenshot of /code with the SDK, as a
scanner would, and types it into the console; the console asks for the elderly card's name, date of birth and
"60 or older"; the resident unticks the date of birth and approves; the console receives exactly name and
"60 or older", verified, once; the resident's history lists the access.

The service, Chromium and the skip rules come from tests/test_browser.py (without /usr/bin/chromium the tests
skip, except under CI=true, where they fail).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdk import TrustList
from sdk.image import decode_image
from sdk.sdjwt import verify_sd_jwt
from tests import test_browser as base

pytestmark = pytest.mark.browser

# The real service (6-second codes) and Chromium, shared with the identity-code browser test.
service = base.service
trust = base.trust
browser = base.browser

DESKTOP = {"width": 1366, "height": 900}
OFFICE = "Window 3, Central Service Hall"
CLERK = "Clerk Zhou"
PURPOSE = "elderly allowance application"
ASKED = ["name", "birth_date", "age_over_60"]
APPROVED = {"name", "age_over_60"}
WAIT_MS = 20_000  # the resident's page polls every 3 s, the console every 1.5 s


def _contexts(browser, service: base.Service):
    phone = browser.new_context(viewport=base.PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                base_url=service.url, locale="en-US")  # the test reads the English wording
    desk = browser.new_context(viewport=DESKTOP, base_url=service.url, locale="en-US")
    for ctx in (phone, desk):
        ctx.set_default_timeout(15_000)
    return phone, desk


def _read_code(page, tmp_path: Path) -> str:
    """The identity code on the resident's screen, read from a screenshot as a scanner would."""
    figure = page.locator("#code")
    page.wait_for_function("() => document.getElementById('code').dataset.serial !== undefined")
    for attempt in range(3):
        serial = figure.get_attribute("data-serial")
        png = base._shot(page, tmp_path / f"resident-code-{attempt}.png")
        if figure.get_attribute("data-serial") == serial:  # not renewed during the shot
            break
    texts = decode_image(png)
    assert len(texts) == 1, texts
    return texts[0]


def test_console_requests_resident_approves_a_subset_console_receives_exactly_it(
    browser, service: base.Service, trust: TrustList, tmp_path: Path
) -> None:
    phone, desk = _contexts(browser, service)
    try:
        resident = phone.new_page()
        console = desk.new_page()

        # -- the resident signs in; the clerk signs in to the console ----------------------------------
        base._sign_in(resident)
        resident_name = resident.locator("h1").inner_text().strip()
        console.goto("/console/signin")
        console.screenshot(path=str(tmp_path / "console-signin.png"), full_page=True)
        console.locator(f'button[data-clerk="{CLERK}"]').click()
        console.wait_for_url("**/console")
        assert console.locator("#clerk-name").inner_text() == CLERK
        assert console.locator("#office-name").inner_text() == OFFICE

        # -- the clerk chooses purpose and fields, then scans the code (typed like a keyboard + Enter) ---
        console.select_option("#purpose", PURPOSE)
        for field in ASKED:
            console.locator(f'input[name=fields][value="LNYD:{field}"]').check()
        code = _read_code(resident, tmp_path)
        resident.goto("/requests")  # the resident's phone waits on the requests page, polling
        assert resident.locator("#no-requests").is_visible()
        scan = console.locator("#scan")
        scan.click()
        scan.press_sequentially(code)
        scan.press("Enter")
        console.wait_for_url(re.compile(r".*/console\?request=[0-9a-f]+$"))
        request_id = console.url.rsplit("=", 1)[1]
        console.wait_for_function("() => document.getElementById('request-status').dataset.status === 'pending'")
        console.screenshot(path=str(tmp_path / "console-waiting.png"), full_page=True)

        # -- the request appears on the phone without a reload: office, clerk, purpose, each field ---------
        card = resident.locator(f'.request-card[data-request="{request_id}"]')
        card.wait_for(state="visible", timeout=WAIT_MS)
        assert card.locator(".office").inner_text() == OFFICE
        assert card.locator(".clerk").inner_text() == CLERK
        assert card.locator(".purpose").inner_text() == PURPOSE
        boxes = card.locator('fieldset[data-type="LNYD"] input[name=fields]')
        assert [boxes.nth(i).get_attribute("data-field") for i in range(boxes.count())] == ASKED
        assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))  # all ticked by default
        assert resident.locator("#no-requests").is_hidden()
        resident.screenshot(path=str(tmp_path / "resident-request.png"), full_page=True)

        # -- the resident unticks the date of birth and approves the rest -------------------------------
        card.locator('input[data-field="birth_date"]').uncheck()
        card.get_by_role("button", name="Approve selected").click()
        resident.wait_for_url(f"**/requests?answered={request_id}")
        assert "60 or older" in resident.locator("#answered").inner_text()
        resident.screenshot(path=str(tmp_path / "resident-approved.png"), full_page=True)

        # -- the console sees the approval and receives exactly that subset, verified ----------------------
        button = console.locator("#receive-button")
        button.wait_for(state="visible", timeout=WAIT_MS)
        assert console.locator("#request-status").get_attribute("data-status") == "approved"
        button.click()
        cert = console.locator('#received .received-cert[data-type="LNYD"]')
        cert.wait_for(state="visible")
        assert console.locator("#received .received-cert").count() == 1
        assert cert.locator(".badge").inner_text() == "verified ✓"
        values = cert.locator("dd[data-field]")
        shown = {values.nth(i).get_attribute("data-field"): values.nth(i).inner_text() for i in range(values.count())}
        assert shown == {"name": resident_name, "age_over_60": "yes"}
        assert "Date of birth" not in console.locator("#received").inner_text()
        assert button.is_hidden()
        console.screenshot(path=str(tmp_path / "console-received.png"), full_page=True)

        # The receiving system can check the SD-JWT itself, against the trust list: exactly those fields.
        token = verify_sd_jwt(cert.locator("textarea").input_value(), trust)
        assert set(token.disclosed) == APPROVED and token.claims["type"] == "LNYD"

        # -- a second receive is refused; the console shows it as received ------------------------------
        csrf = console.locator("#console").get_attribute("data-csrf")
        again = console.request.post(f"/console/requests/{request_id}/receive", headers={"X-CSRF-Token": csrf or ""})
        assert again.status == 409 and again.json()["error"] == "already_fetched"
        console.reload()
        console.wait_for_function("() => document.getElementById('request-status').dataset.status === 'fetched'")
        assert console.locator("#receive-button").is_hidden()

        # -- the resident's history lists the access, newest first ----------------------------------------
        resident.goto("/history")
        entries = resident.locator("ol.history li")
        texts = [entries.nth(i).locator(".what").inner_text() for i in range(entries.count())]
        took = [i for i, text in enumerate(texts) if f"{OFFICE} took your elderly preferential card" in text]
        assert len(took) == 1, texts
        assert PURPOSE in texts[took[0]] and "birth_date" not in texts[took[0]]
        assert entries.nth(took[0]).get_attribute("data-action") == "fetch"
        assert "tried to take" in texts[0] and took[0] > 0  # the refused second receive is the newest
        assert any(text.startswith("You let") for text in texts[took[0] + 1:])  # the approval came before
        resident.screenshot(path=str(tmp_path / "resident-history.png"), full_page=True)
    finally:
        phone.close()
        desk.close()
