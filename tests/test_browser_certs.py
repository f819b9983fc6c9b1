"""Showing a certificate (亮证) in a real headless Chromium, against the real service (`citycode serve`).

The resident opens the elderly card, ticks "Name" and "60 or older", presses Show; the test reads the QR
from a screenshot with the SDK, offline, from the trust list and the department's status list fetched from
the service, as a gate after a sync would, and checks that the code carries exactly those fields.

The service, Chromium and the phone-sized context come from tests/test_browser.py (same skip rules: without
/usr/bin/chromium the tests skip, except under CI=true, where they fail).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdk import TrustList, Verifier
from sdk.statuslist import StatusCache
from tests import test_browser as base
from verifiers.scenes import SCENES

pytestmark = pytest.mark.browser

# The real service, Chromium and a 390x844 phone context, shared with the identity-code browser test.
service = base.service
trust = base.trust
browser = base.browser
context = base.context

ISSUER = "civil-affairs"  # issues the elderly card (LNYD) of the first demo resident
CHOSEN = ["name", "age_over_60"]

CODE_READY = """() => {
  const img = document.getElementById("cert-code-image");
  const fig = document.getElementById("cert-code");
  return !!img && !fig.hidden && img.src.startsWith("data:image/svg+xml") && img.complete && img.naturalWidth > 0;
}"""


def _gate(service: base.Service, trust: TrustList) -> Verifier:
    """An offline verifier holding the issuer's current status list."""
    status = StatusCache()
    status.load(base._get(f"{service.url}/api/v1/status/{ISSUER}").decode().strip(), trust)
    return Verifier(trust, leeway=30, status=status)


def _shot(page, path: Path) -> bytes:
    """Screenshot of the certificate code, once fully decoded; taken again if it renewed meanwhile."""
    figure = page.locator("#cert-code")
    png = b""
    for _ in range(3):
        page.wait_for_function(CODE_READY)
        serial = figure.get_attribute("data-serial")
        page.locator("#cert-code-image").evaluate("img => img.decode()")
        png = bytes(figure.screenshot(path=str(path), animations="disabled"))
        if figure.get_attribute("data-serial") == serial:
            break
    return png


def _open_elderly_card(page, shots: Path | None = None) -> str:
    """From the code page to the elderly card through the links a resident would tap; its certificate id."""
    page.locator("#certificates-link").click()
    page.wait_for_url("**/certificates")
    if shots is not None:
        page.screenshot(path=str(shots / "certificates.png"), full_page=True)
    card = page.locator("a.cert-card[data-type=LNYD]")
    cert_id = card.get_attribute("data-cert")
    assert cert_id
    card.click()
    page.wait_for_url(f"**/certificates/{cert_id}")
    return str(cert_id)


def test_resident_shows_chosen_fields_and_the_sdk_reads_only_those(
    context, service: base.Service, trust: TrustList, tmp_path: Path
) -> None:
    page = context.new_page()
    resident = base._sign_in(page)
    page.screenshot(path=str(tmp_path / "code-page.png"), full_page=True)
    cert_id = _open_elderly_card(page, tmp_path)
    page.screenshot(path=str(tmp_path / "certificate.png"), full_page=True)

    # Everything fits a 390 px phone: nothing sticks out sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= base.PHONE["width"]

    for name in CHOSEN:
        page.locator(f"input[name=fields][value={name}]").check()
    assert page.locator("#show-warning").is_hidden()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.locator("#show-button").click()
    figure = page.locator("#cert-code")
    page.wait_for_function(CODE_READY)
    assert figure.get_attribute("data-fields") == ",".join(CHOSEN)
    assert "Name · 60 or older" in page.locator("#cert-code-fields").inner_text()

    png = _shot(page, tmp_path / "cert-code-1.png")
    page.screenshot(path=str(tmp_path / "shown.png"))  # the viewport, as the phone shows it
    image = page.locator("#cert-code-image").bounding_box()
    assert image is not None
    assert 0 <= image["x"] <= base.PHONE["width"] - image["width"]
    assert 0 <= image["y"] <= base.PHONE["height"] - image["height"]  # scrolled into view
    assert abs(image["width"] - image["height"]) < 1

    gate = _gate(service, trust)
    first = gate.verify_image(png, decoder="zxing")
    assert first.accepted, first.to_dict()
    assert (first.kind, first.cert_type, first.issuer) == ("cert", "LNYD", ISSUER)
    assert first.cert_id == cert_id and first.holder == resident
    assert first.fields == {"name": "Li Wei", "age_over_60": True}
    assert first.expires_at is not None and first.issued_at is not None
    assert first.expires_at - first.issued_at == base.CODE_LIFETIME
    scenic = gate.verify_image(png, SCENES["scenic-elderly"], decoder="zxing")
    assert scenic.accepted, scenic.to_dict()

    # Renewed in place before it expires, with the same fields.
    serial = figure.get_attribute("data-serial")
    page.wait_for_function(
        "s => document.getElementById('cert-code').dataset.serial !== s",
        arg=serial,
        timeout=base.RENEWAL_TIMEOUT * 1000,
    )
    second = gate.verify_image(_shot(page, tmp_path / "cert-code-2.png"), decoder="zxing")
    assert second.accepted, second.to_dict()
    assert second.fields == {"name": "Li Wei", "age_over_60": True}
    assert second.code_id != first.code_id and second.cert_id == cert_id
    assert page.evaluate("window.__sameDocument === true")


def test_a_new_choice_withdraws_the_code_and_a_date_beside_its_predicate_is_flagged(context, tmp_path: Path) -> None:
    page = context.new_page()
    base._sign_in(page)
    _open_elderly_card(page)

    page.locator("#show-button").click()  # nothing ticked
    assert "at least one" in page.locator("#show-error").inner_text()
    assert page.locator("#cert-code").is_hidden()

    page.locator("input[value=age_over_60]").check()
    page.locator("#show-button").click()
    page.wait_for_function(CODE_READY)
    assert page.locator("#cert-code").get_attribute("data-fields") == "age_over_60"

    page.locator("input[value=birth_date]").check()  # the code on screen no longer matches the choice
    assert page.locator("#cert-code").is_hidden()
    warning = page.locator("#show-warning")
    assert warning.is_visible() and "Date of birth" in warning.inner_text()
    page.screenshot(path=str(tmp_path / "warning.png"), full_page=True)


def test_a_certificate_suspended_while_its_page_is_open_is_not_shown(
    context, service: base.Service, tmp_path: Path
) -> None:
    from codeservice.certificates.service import set_status
    from codeservice.config import Settings
    from codeservice.db import Database

    page = context.new_page()
    base._sign_in(page)
    cert_id = _open_elderly_card(page)
    page.locator("input[value=age_over_60]").check()

    # The department suspends it meanwhile (straight in the service's database, as its admin API would).
    db = Database(Settings.from_env({"CITYCODE_HOME": str(service.home)}).database_url)

    def set_to(status: str) -> None:
        with db.session() as s:
            set_status(s, cert_id, status)

    try:
        set_to("suspended")
        page.locator("#show-button").click()
        error = page.locator("#show-error")
        error.wait_for(state="visible")
        assert "suspended" in error.inner_text()
        assert page.locator("#cert-code").is_hidden()
        page.screenshot(path=str(tmp_path / "suspended-on-show.png"), full_page=True)
        page.reload()
        assert page.locator("#show-form").count() == 0
        assert "suspended" in page.locator("main .error").inner_text()
        page.screenshot(path=str(tmp_path / "suspended.png"), full_page=True)
    finally:
        set_to("valid")
        db.dispose()
