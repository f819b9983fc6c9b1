"""The resident's code page in a real headless Chromium, against the real service (`citycode serve`).

The service runs as a subprocess on its embedded defaults (SQLite, in-process state) with a short code
lifetime, so that the page renews the code within a few seconds. What the browser shows is read back
from screenshots with the SDK, as a gate would: offline, from the trust list fetched once.

Chromium is Debian's (/usr/bin/chromium); without it the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdk import Reason, Result, TrustList, Verifier, load_anchor
from verifiers.scenes import SCENES

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CITYCODE = Path(sys.executable).with_name("citycode")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
CODE_LIFETIME = 6  # seconds; the page fetches the next code after lifetime - margin = 5 s
RIDE_VALIDITY, RIDE_REFRESH = 10, 5  # a ride code lives 10 s; the page signs a new one every 5 s
PHONE = {"width": 390, "height": 844}
STARTUP_TIMEOUT = 30.0
RENEWAL_TIMEOUT = 20.0

# True once the <img> shows a decoded picture from the current data URL.
IMAGE_READY = """() => {
  const img = document.getElementById("code-image");
  return !!img && img.src.startsWith("data:image/svg+xml") && img.complete && img.naturalWidth > 0;
}"""


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI=true: browser tests must run)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


@dataclass(frozen=True)
class Service:
    url: str
    home: Path
    log: Path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group (gunicorn arbiter and its workers); kill what lingers."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The arbiter is gone; make sure no worker of the group outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    if not CITYCODE.exists():
        pytest.fail(f"console script {CITYCODE} missing; install the project into this virtualenv")
    home = tmp_path_factory.mktemp("citycode-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")}
    env.update(CITYCODE_HOME=str(home), CITYCODE_CODE_LIFETIME=str(CODE_LIFETIME), PYTHONUNBUFFERED="1",
               CITYCODE_RIDE_CODE_VALIDITY=str(RIDE_VALIDITY), CITYCODE_RIDE_REFRESH=str(RIDE_REFRESH))
    init = subprocess.run([str(CITYCODE), "init"], env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert init.returncode == 0, f"citycode init failed: {init.stderr.decode(errors='replace')}"

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(CITYCODE), "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"citycode serve exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                health = json.loads(_get(url + "/api/v1/health", timeout=2))
                if health.get("status") == "ok":
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                output = log.read_text(errors="replace")
                pytest.fail(f"citycode serve not healthy after {STARTUP_TIMEOUT:.0f} s:\n{output}")
            time.sleep(0.1)
        yield Service(url, home, log)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def trust(service: Service) -> TrustList:
    """The service's trust list, fetched once: from here on verification is offline, as at a gate."""
    token = _get(service.url + "/api/v1/trust-list").decode().strip()
    anchor = load_anchor(_get(service.url + "/api/v1/trust-anchor"))
    return TrustList.load(token, anchor)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright not installed: {exc}")

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser, service: Service) -> Iterator[object]:
    """A fresh phone-sized browsing context (own cookies) per test, its browser asking for English (the tests
    read the pages' English wording; tests/test_browser_i18n.py covers Chinese, the default, and Tibetan)."""
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                              base_url=service.url, locale="en-US")
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


def _sign_in(page) -> str:
    """Sign in as the first demo resident from the sign-in page; return the resident's id."""
    page.goto("/signin")
    button = page.locator("button[data-resident]").first
    resident = button.get_attribute("data-resident")
    assert resident
    button.click()
    page.wait_for_url("**/code")
    return str(resident)


def _shot(page, path: Path) -> bytes:
    """Screenshot of the code figure, once the image shown is fully decoded."""
    page.wait_for_function(IMAGE_READY)
    page.locator("#code-image").evaluate("img => img.decode()")
    return bytes(page.locator("#code").screenshot(path=str(path), animations="disabled"))


def test_resident_page_shows_a_code_the_sdk_accepts_and_renews_it(context, trust: TrustList, tmp_path: Path) -> None:
    verifier = Verifier(trust, leeway=30)
    bus = SCENES["bus"]
    page = context.new_page()
    resident = _sign_in(page)
    figure = page.locator("#code")

    # -- the first code -----------------------------------------------------------------------
    page.wait_for_function("() => document.getElementById('code').dataset.serial !== undefined")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    for _ in range(3):  # a renewal during the screenshot would blur which code was shot: take it again
        serial = figure.get_attribute("data-serial")
        first_png = _shot(page, tmp_path / "code-1.png")
        if figure.get_attribute("data-serial") == serial:
            break
    page.screenshot(path=str(tmp_path / "page-1.png"), full_page=True)
    first = verifier.verify_image(first_png, bus, decoder="zxing")
    assert first.accepted, first.to_dict()
    assert (first.kind, first.subject) == ("id", resident)
    assert first.expires_at is not None and first.issued_at is not None
    assert first.expires_at - first.issued_at == CODE_LIFETIME
    assert figure.get_attribute("data-expires-at") == str(first.expires_at) or (
        figure.get_attribute("data-serial") != serial  # renewed meanwhile: the figure describes a newer code
    )

    # -- renewed in place, without reload ------------------------------------------------------
    page.wait_for_function(
        "s => document.getElementById('code').dataset.serial !== s", arg=serial, timeout=RENEWAL_TIMEOUT * 1000
    )
    second_png = _shot(page, tmp_path / "code-2.png")
    second = verifier.verify_image(second_png, bus, decoder="zxing")
    assert second.accepted, second.to_dict()
    assert (second.kind, second.subject) == ("id", resident)
    assert second.code_id != first.code_id
    assert second.expires_at is not None and second.expires_at > first.expires_at
    assert page.evaluate("window.__sameDocument === true")  # replaced in place, no reload

    # -- the first screenshot is worthless once its code has expired ----------------------------
    leeway = 5
    strict = Verifier(trust, leeway=leeway)
    late: Result = strict.verify_image(first_png, bus, at=first.expires_at + leeway + 1, decoder="zxing")
    assert not late.accepted
    assert late.reason is Reason.EXPIRED, late.to_dict()
    assert late.code_id == first.code_id


def test_code_page_and_api_require_sign_in(context, service: Service) -> None:
    page = context.new_page()
    response = page.goto("/code")
    assert response is not None and response.ok
    assert page.url == service.url + "/signin"
    assert response.request.redirected_from is not None
    assert response.request.redirected_from.url == service.url + "/code"
    assert page.locator("button[data-resident]").count() >= 1

    api = context.request.get("/api/v1/me/code", max_redirects=0)
    assert api.status == 401
    assert api.headers["content-type"].startswith("application/json")
    assert api.json()["error"] == "unauthorised"

    # Also as a plain client that does not follow redirects: a redirect, not a page.
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.build_opener(NoRedirect).open(service.url + "/code", timeout=5)
    assert caught.value.code in (302, 303)
    assert caught.value.headers["Location"].endswith("/signin")


def test_code_fits_a_small_phone(browser, service: Service, trust: TrustList, tmp_path: Path) -> None:
    """On a 320 px wide screen the code shrinks to fit its card: clipped, it would lose its quiet zone."""
    ctx = browser.new_context(viewport={"width": 320, "height": 568}, is_mobile=True, base_url=service.url)
    try:
        page = ctx.new_page()
        resident = _sign_in(page)
        png = _shot(page, tmp_path / "code-320.png")
        image = page.locator("#code-image").bounding_box()
        card = page.locator("#code").bounding_box()
        assert image is not None and card is not None
        assert card["x"] <= image["x"] and image["x"] + image["width"] <= card["x"] + card["width"], (image, card)
        assert card["x"] + card["width"] <= 320
        assert abs(image["width"] - image["height"]) < 1  # still square
        result = Verifier(trust).verify_image(png, SCENES["service-window"], decoder="zxing")
        assert result.accepted, result.to_dict()
        assert result.subject == resident
    finally:
        ctx.close()
