"""The clerk's console reads the resident's code with the device camera and with a USB scanner, in a real headless
Chromium against the real service (`citycode serve`): the camera is Chromium's fake one
(``--use-fake-device-for-media-stream``), playing a Y4M video made of a real QR image of a real identity code the
service signed (``citycode code issue --png``). The console decodes it (the browser's BarcodeDetector where it
reads QR codes, else the vendored jsQR: Chromium on Linux has none) and goes on exactly as if a scanner had typed
it. A refused code keeps everything the clerk chose and says what to do next, in the clerk's language.

The service and the skip rules come from tests/test_browser.py (without /usr/bin/chromium the tests skip, except
under CI=true, where they fail).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sdk import Verifier
from sdk.image import decode_image
from tests import test_browser as base

pytestmark = pytest.mark.browser

service = base.service
trust = base.trust

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "codeservice" / "static" / "vendor"
DESKTOP = {"width": 1366, "height": 900}
CLERK = "Clerk Zhou"
ELDERLY = "elderly allowance application"
FOOD = "food-licence renewal"
WIDTH, HEIGHT, FRAMES = 640, 480, 10


def _first_resident(service: base.Service) -> str:
    page = base._get(service.url + "/signin").decode()
    found = re.search(r'data-resident="([a-z2-7]+)"', page)
    assert found, page
    return found.group(1)


def _issue_code(service: base.Service, pid: str, png: Path) -> str:
    """A real identity code signed by the running service's keys, with a life long enough for the test, and its
    QR image as the service renders it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")}
    env.update(CITYCODE_HOME=str(service.home), CITYCODE_CODE_LIFETIME="900")
    made = subprocess.run([str(base.CITYCODE), "code", "issue", pid, "--png", str(png)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def write_y4m(qr_png: Path, out: Path) -> None:
    """A camera's view of the code: the QR image scaled up (whole modules), on a grey desk, as Y4M 4:2:0 frames."""
    qr = Image.open(qr_png).convert("L")
    scale = max(1, 360 // qr.width)
    qr = qr.resize((qr.width * scale, qr.height * scale), Image.Resampling.NEAREST)
    frame = Image.new("L", (WIDTH, HEIGHT), 150)
    frame.paste(qr, ((WIDTH - qr.width) // 2, (HEIGHT - qr.height) // 2))
    luma = frame.tobytes()
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    with out.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(FRAMES):
            handle.write(b"FRAME\n" + luma + chroma + chroma)


@pytest.fixture(scope="module")
def camera_code(service: base.Service, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The resident's code and the fake camera's video of it."""
    home = tmp_path_factory.mktemp("camera")
    png = home / "code.png"
    code = _issue_code(service, _first_resident(service), png)
    assert decode_image(png.read_bytes()) == [code]  # the image is the code
    video = home / "code.y4m"
    write_y4m(png, video)
    # What the camera films still reads as the code: the first frame, back from Y4M to a picture.
    raw = video.read_bytes()
    start = raw.index(b"FRAME\n") + len(b"FRAME\n")
    first = Image.frombytes("L", (WIDTH, HEIGHT), raw[start:start + WIDTH * HEIGHT])
    buffer = io.BytesIO()
    first.save(buffer, "PNG")
    assert decode_image(buffer.getvalue()) == [code]
    return code, video


@pytest.fixture(scope="module")
def camera_browser(camera_code: tuple[str, Path]) -> Iterator[object]:
    """Chromium with a fake camera that films the resident's code."""
    if not base.CHROMIUM.exists():
        base._unavailable(f"{base.CHROMIUM} not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        base._unavailable(f"playwright not installed: {exc}")
    _, video = camera_code
    args = [*base.CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}"]
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(base.CHROMIUM), args=args, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _console(browser, service: base.Service, locale: str = "en-US"):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=DESKTOP, base_url=service.url, locale=locale, permissions=["camera"])
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/console/signin")
    page.locator(f'button[data-clerk="{CLERK}"]').click()
    page.wait_for_url("**/console")
    return context, page


def _choose(page, purpose: str, fields: list[str], keep: str | None = None) -> None:  # type: ignore[no-untyped-def]
    page.select_option("#purpose", purpose)
    for value in fields:
        page.locator(f'input[name=fields][value="{value}"]').check()
    if keep is not None:
        page.select_option("#keep", keep)


def _asked(page) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """What the request just sent asks for, as the console's status call reports it."""
    status = page.evaluate("url => fetch(url).then(r => r.json())",
                           page.locator("#progress").get_attribute("data-status-url"))
    return [{"type": i["type"], "fields": [f["name"] for f in i["fields"]]} for i in status["items"]]


def test_the_vendored_decoder_is_the_one_its_note_names() -> None:
    note = (VENDOR / "README.md").read_text()
    digest = hashlib.sha256((VENDOR / "jsQR.js").read_bytes()).hexdigest()
    assert f"`{digest}`" in note and "| 1.4.0 |" in note and "jsqr@1.4.0" in note
    assert "Apache License" in (VENDOR / "jsQR.LICENSE").read_text()


def test_the_console_reads_the_code_with_the_camera_as_if_a_scanner_typed_it(
    camera_browser, service: base.Service, camera_code: tuple[str, Path], trust, tmp_path: Path
) -> None:
    code, _ = camera_code
    assert Verifier(trust, leeway=30).verify(code).accepted
    context, page = _console(camera_browser, service)
    try:
        # Nothing chosen yet: the code read goes into the field, and the clerk is taken to the purpose.
        page.locator("#camera-button").click()
        page.wait_for_function("() => document.getElementById('scan').value !== ''", timeout=30_000)
        assert page.locator("#scan").input_value() == code
        assert page.evaluate("() => document.activeElement.id") == "purpose"
        assert page.locator("#console").get_attribute("data-decoder") in ("jsqr", "barcode-detector")
        assert page.locator("#camera").is_hidden()  # the camera is off once the code is read
        assert page.url.endswith("/console")  # not sent: no purpose yet
        page.screenshot(path=str(tmp_path / "console-camera-read.png"), full_page=True)

        # Purpose and fields chosen, a second read sends the request at once, as a scanner's Enter does.
        _choose(page, ELDERLY, ["LNYD:name", "LNYD:age_over_60"])
        page.locator("#scan").fill("")
        page.locator("#camera-button").click()
        page.wait_for_url(re.compile(r".*/console\?request=[0-9a-f]+$"), timeout=30_000)
        page.wait_for_function("() => document.getElementById('request-status').dataset.status === 'pending'")
        assert _asked(page) == [{"type": "LNYD", "fields": ["name", "age_over_60"]}]
        page.screenshot(path=str(tmp_path / "console-camera-sent.png"), full_page=True)
    finally:
        context.close()


def test_a_usb_scanner_types_the_code_and_enter_sends_it(
    camera_browser, service: base.Service, camera_code: tuple[str, Path]
) -> None:
    code, _ = camera_code
    context, page = _console(camera_browser, service)
    try:
        assert page.evaluate("() => document.activeElement.id") == "scan"  # ready for the scanner on arrival
        page.keyboard.type(code)  # the scanner is a keyboard: the code, then Enter
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "purpose" and page.url.endswith("/console")
        _choose(page, FOOD, ["YYZZ:company_name", "SPJY:catering"])
        page.locator("#scan").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/console\?request=[0-9a-f]+$"))
        assert _asked(page) == [{"type": "YYZZ", "fields": ["company_name"]}, {"type": "SPJY", "fields": ["catering"]}]
    finally:
        context.close()


def test_the_console_offers_only_what_the_chosen_purpose_needs(camera_browser, service: base.Service) -> None:
    context, page = _console(camera_browser, service)
    try:
        assert page.locator("#purpose-first").is_visible()
        assert page.locator("input[name=fields]:visible").count() == 0
        page.select_option("#purpose", FOOD)
        shown = page.locator("input[name=fields]:visible")
        values = [shown.nth(i).get_attribute("value") for i in range(shown.count())]
        assert values and all(v.split(":")[0] in ("YYZZ", "SPJY") for v in values)
        assert page.locator("input[name=fields]:enabled").count() == len(values)  # only these are sent
        page.select_option("#purpose", ELDERLY)
        shown = page.locator("input[name=fields]:visible")
        values = [shown.nth(i).get_attribute("value") for i in range(shown.count())]
        assert "LNYD:name" in values and "LNYD:gender" not in values and not any(v.startswith("YYZZ") for v in values)
    finally:
        context.close()


@pytest.mark.parametrize(("typed", "next_step"), [
    ("https://example.com/pay", "That is not a city code. Ask the resident to open the city’s app"),
    ("CC1:abc", "Scan the code again, holding it steady"),
])
def test_a_refused_code_keeps_what_the_clerk_chose_and_says_what_to_do_next(
    camera_browser, service: base.Service, camera_code: tuple[str, Path], typed: str, next_step: str,
    tmp_path: Path
) -> None:
    code, _ = camera_code
    context, page = _console(camera_browser, service)
    chosen = ["YYZZ:company_name", "YYZZ:address", "SPJY:catering"]
    try:
        _choose(page, FOOD, chosen, keep="60")
        page.locator("#scan").fill(typed)
        page.locator("#scan").press("Enter")
        error = page.locator("#request-error")
        error.wait_for(state="visible")
        assert "The code was not accepted" in error.inner_text() and next_step in error.inner_text()
        page.screenshot(path=str(tmp_path / "console-refused.png"), full_page=True)
        # Everything the clerk chose is still chosen, and the field waits for the next scan.
        assert page.locator("#purpose").input_value() == FOOD
        ticked = page.locator("input[name=fields]:checked")
        assert sorted(ticked.nth(i).get_attribute("value") for i in range(ticked.count())) == sorted(chosen)
        assert page.locator(f'.purpose-asks[data-purpose="{FOOD}"]').is_visible()
        assert page.locator("#keep").input_value() == "60"
        assert page.locator("#scan").input_value() == ""
        assert page.evaluate("() => document.activeElement.id") == "scan"
        # The right code now sends exactly what was chosen, without choosing it again.
        page.keyboard.type(code)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/console\?request=[0-9a-f]+$"))
        assert _asked(page) == [{"type": "YYZZ", "fields": ["company_name", "address"]},
                                {"type": "SPJY", "fields": ["catering"]}]
    finally:
        context.close()


def test_a_refused_code_tells_the_clerk_what_to_do_in_chinese_and_tibetan(
    camera_browser, service: base.Service
) -> None:
    for locale, words in (("zh-CN", "请居民打开本市应用并出示身份码"), ("bo", "གྲོང་ཁྱེར་གྱི་མཉེན་ཆས་ཁ་ཕྱེ་ནས")):
        context, page = _console(camera_browser, service, locale=locale)
        try:
            _choose(page, ELDERLY, ["LNYD:name"])
            page.locator("#scan").fill("https://example.com/pay")
            page.locator("#scan").press("Enter")
            error = page.locator("#request-error")
            error.wait_for(state="visible")
            assert words in error.inner_text(), (locale, error.inner_text())
            assert page.locator("#purpose").input_value() == ELDERLY
            assert page.locator('input[value="LNYD:name"]').is_checked()
            assert json.loads(page.locator("#i18n-catalog").inner_text())  # the scripts' strings came along
        finally:
            context.close()
