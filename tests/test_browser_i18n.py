"""Every page in Chinese (the default), Tibetan and English, its glyphs drawn, its times in city time, and the
elders' mode measured, in a real headless Chromium against the real service (`citycode serve`).

- Each resident page, the console and both sign-ins in zh-CN, bo and en: `<html lang>`, the page's own script
  in the language (Han or Tibetan letters in what it shows), every time on it in city time (Asia/Shanghai) in
  one 24-hour style although the browser's zone is New York's; screenshots under test-artifacts/browser-i18n/.
- Fonts: `document.fonts.check` for the page's font, and a known Chinese and Tibetan string drawn with glyphs,
  not missing-glyph boxes (its width differs from as many U+10FFFD, and two different strings draw differently).
- Elders' mode (长辈版), one tap from the home page and remembered: every number of the MIIT guideline measured
  from the rendered page (text >= 18 px, headline functions >= 30 px, line height >= 1.3, contrast >= 4.5:1,
  touch targets >= 60 x 60 px, the code and at most three large actions on the first screen, nothing moving
  while the code renews itself).

The service, Chromium and the skip rules come from tests/test_browser.py.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import test_browser as base

pytestmark = pytest.mark.browser

service = base.service
trust = base.trust
browser = base.browser

ARTIFACTS = base.ROOT / "test-artifacts" / "browser-i18n"
CITY = ZoneInfo("Asia/Shanghai")
BROWSER_ZONE = "America/New_York"  # 13 hours from the city's: a time in the browser's zone cannot pass
DESKTOP = {"width": 1366, "height": 900}
PURPOSE = "elderly allowance application"
LOCALES = {"zh": ("zh-CN", "zh-Hans"), "bo": ("bo-CN", "bo"), "en": ("en-US", "en")}
HAN = re.compile(r"[\u4e00-\u9fff]")
TIBETAN = re.compile(r"[\u0f00-\u0fff]")
#: Anything that looks like a time of day; each must be one of ours: "2026-12-07 12:50" or "12:50".
CLOCKISH = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\.?)?")
OURS = re.compile(r"(?:\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}")
FOREIGN_STYLES = re.compile(r"\b[AP]M\b|上午|下午|\d{1,2}/\d{1,2}/\d{2,4}")


def _artifact(lang: str, name: str) -> Path:
    path = ARTIFACTS / lang / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _context(browser, service: base.Service, lang: str, viewport=base.PHONE, **extra):  # type: ignore[no-untyped-def]
    ctx = browser.new_context(viewport=viewport, base_url=service.url, locale=LOCALES[lang][0],
                              timezone_id=BROWSER_ZONE, **extra)
    ctx.set_default_timeout(15_000)
    return ctx


def _visible_text(page) -> str:
    """What the page shows, less the request cards' countdowns ("4:59" is a duration, not a time of day)."""
    return str(page.evaluate("""() => {
      let text = document.body.innerText;
      for (const el of document.querySelectorAll(".countdown")) text = text.replace(el.innerText, "");
      return text;
    }"""))


def _check_page(page, lang: str, name: str) -> str:
    """The page speaks *lang*: its <html lang>, its own script on screen, one time style; screenshot kept."""
    tag = LOCALES[lang][1]
    assert page.locator("html").get_attribute("lang") == tag, name
    text = _visible_text(page)
    if lang == "zh":
        assert HAN.search(text), f"{name}: no Chinese on the page"
    if lang == "bo":
        assert TIBETAN.search(text), f"{name}: no Tibetan on the page"
    for found in CLOCKISH.findall(text):
        assert OURS.fullmatch(found), f"{name}: {found!r} is not the one 24-hour style"
    assert not FOREIGN_STYLES.search(text), f"{name}: {FOREIGN_STYLES.search(text)} in {text!r}"
    page.screenshot(path=str(_artifact(lang, name)), full_page=True)
    return text


def _city_clock(iso: str) -> str:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(CITY).strftime("%H:%M")


def _clerk_asks(console, resident) -> str:
    """The signed-in clerk's console asks for the name on the resident's elderly card; the request's id."""
    console.goto("/console")
    code = resident.context.request.get("/api/v1/me/code").json()["code"]
    console.fill("#scan", code)
    console.select_option("#purpose", PURPOSE)
    console.check("input[value='LNYD:name']")
    console.click("#send-button")
    console.wait_for_selector("#request-status[data-status=pending]")
    return str(console.locator("#progress").get_attribute("data-request-id"))


def _sign_in_resident(page) -> None:
    page.goto("/signin")
    page.locator("button[data-resident]").first.click()
    page.wait_for_url("**/code")


@pytest.mark.parametrize("lang", ["zh", "bo", "en"])
def test_every_page_speaks_the_language_with_city_times_in_one_style(browser, service, lang: str) -> None:
    phone = _context(browser, service, lang, device_scale_factor=2, is_mobile=True, has_touch=True)
    desk = _context(browser, service, lang, viewport=DESKTOP)
    try:
        resident, console = phone.new_page(), desk.new_page()
        resident.goto("/signin")
        _check_page(resident, lang, "signin")
        _sign_in_resident(resident)
        resident.wait_for_function("() => document.getElementById('code').dataset.serial !== undefined")
        status = resident.locator("#code-status").inner_text()
        assert re.search(r"\d", status), status  # "5 秒内有效", "སྐར་ཆ་ 5 ནུས་ལྡན།", "Valid for 5 s"
        if lang != "en":
            assert "Valid for" not in status
        _check_page(resident, lang, "code")

        resident.goto("/certificates")
        _check_page(resident, lang, "certificates")
        resident.locator(".cert-card").first.click()
        resident.wait_for_selector("#show-form")
        _check_page(resident, lang, "certificate")

        resident.goto("/rides")
        with resident.expect_response(lambda r: r.url.endswith("/api/v1/me/ride/devices")) as registered:
            resident.locator("#ride-enable").click()
        credential = registered.value.json()
        resident.wait_for_function("() => document.getElementById('ride').dataset.state === 'ready'")
        resident.wait_for_function("() => document.getElementById('ride-until').textContent.length > 0")
        until = resident.locator("#ride-until").inner_text()  # formatted by the page's script, in city time
        assert until == dt.datetime.fromtimestamp(int(credential["expires_at"]), CITY).strftime("%Y-%m-%d %H:%M")
        _check_page(resident, lang, "rides")

        # -- the clerk asks; the console and the resident's pages show the times in city time ------------------
        console.goto("/console/signin")
        _check_page(console, lang, "console-signin")
        console.locator("button[data-clerk='Clerk Zhou']").click()
        console.wait_for_url("**/console")
        request_id = _clerk_asks(console, resident)
        state = console.context.request.get(f"/console/requests/{request_id}").json()
        pending = console.locator("#request-status").inner_text()
        assert _city_clock(state["answer_by"]) in pending, (pending, state["answer_by"])
        assert console.locator("#shown-created").inner_text() == dt.datetime.fromisoformat(
            state["created_at"]).astimezone(CITY).strftime("%Y-%m-%d %H:%M")
        _check_page(console, lang, "console")

        resident.goto("/requests")
        card = resident.locator(f"[data-request='{request_id}']")
        card.wait_for()
        _check_page(resident, lang, "requests")
        card.locator("button.approve").click()
        resident.wait_for_selector("#answered")
        _check_page(resident, lang, "requests-answered")

        console.wait_for_selector("#request-status[data-status=approved]", timeout=20_000)
        state = console.context.request.get(f"/console/requests/{request_id}").json()
        assert _city_clock(state["fetch_by"]) in console.locator("#request-status").inner_text()
        console.click("#receive-button")
        console.wait_for_selector(".received-cert.verified")
        _check_page(console, lang, "console-received")

        resident.goto("/history")
        stamps = resident.locator("#history time")
        assert stamps.count() >= 2
        for i in range(stamps.count()):
            at = stamps.nth(i).get_attribute("datetime") or ""
            moment = dt.datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(CITY)
            assert stamps.nth(i).inner_text() == moment.strftime("%Y-%m-%d %H:%M")
        _check_page(resident, lang, "history")

        # -- the pages for a life without a smartphone, and the venue check-in -----------------------------------
        for path, name in (("/cards", "cards"), ("/helpers", "helpers"), ("/checkin", "checkin")):
            resident.goto(path)
            _check_page(resident, lang, name)
        console.goto("/console/cards")
        _check_page(console, lang, "console-cards")

        missing = resident.goto("/no-such-page")
        assert missing is not None and missing.status == 404
        assert resident.locator(".error-page[data-status='404']").is_visible()
        assert resident.locator("#error-home").get_attribute("href") == "/"
        _check_page(resident, lang, "error-404")
    finally:
        phone.close()
        desk.close()


def test_the_switch_changes_the_language_and_is_remembered(browser, service) -> None:
    ctx = _context(browser, service, "en")
    try:
        page = ctx.new_page()
        page.goto("/signin")
        assert page.locator("html").get_attribute("lang") == "en"  # the browser asked for English
        page.locator(".switch[data-lang='bo']").click()
        page.wait_for_function("() => document.documentElement.lang === 'bo'")
        assert page.url.endswith("/signin")  # back on the same page
        assert page.locator("h1").inner_text() == "ཐོ་འགོད།"
        page.goto("/console/signin")  # remembered on the next page
        assert page.locator("html").get_attribute("lang") == "bo"
        page.locator(".switch[data-lang='zh']").click()
        page.wait_for_function("() => document.documentElement.lang === 'zh-Hans'")
        assert page.locator("h1").inner_text() == "窗口工作台"
    finally:
        ctx.close()


# -- fonts -----------------------------------------------------------------------------------------------------------
GLYPHS = """([text, other]) => {
  const family = getComputedStyle(document.body).fontFamily;
  const box = (s) => {
    const el = document.createElement("span");
    el.style.cssText = "position:absolute;left:0;top:0;white-space:nowrap;font-size:48px;font-family:" + family;
    el.textContent = s;
    document.body.appendChild(el);
    const width = el.getBoundingClientRect().width;
    el.remove();
    return width;
  };
  return {family: family, text: box(text), other: box(other), tofu: box("\\u{10FFFD}".repeat([...text].length))};
}"""
LOADED = """async ([name, text]) => {
  const family = "probe" + Math.random().toString(36).slice(2);
  const face = new FontFace(family, 'local("' + name + '")');
  try { await face.load(); } catch (error) { return "not installed"; }
  document.fonts.add(face);
  return document.fonts.check("20px " + family, text);
}"""
SAMPLES = {
    "zh": ("Noto Sans CJK SC", "一码通城居民", "乘车证照授权"),
    "bo": ("Tibetan Machine Uni", "བོད་ཡིག", "ཐོ་འགོད།"),
}


def _drawn(page, text: str, path: Path) -> bytes:
    page.evaluate("""(text) => {
      const el = document.createElement("div");
      el.id = "glyph-probe";
      el.style.cssText = "position:fixed;left:0;top:0;padding:8px;background:#fff;color:#000;font-size:48px;" +
                         "white-space:nowrap;z-index:9";
      el.textContent = text;
      document.body.appendChild(el);
    }""", text)
    png = bytes(page.locator("#glyph-probe").screenshot(path=str(path)))
    page.evaluate("() => document.getElementById('glyph-probe').remove()")
    return png


@pytest.mark.parametrize("lang", ["zh", "bo"])
def test_chinese_and_tibetan_glyphs_draw_not_as_boxes(browser, service, lang: str) -> None:
    family, text, other = SAMPLES[lang]
    ctx = _context(browser, service, lang)
    try:
        page = ctx.new_page()
        page.goto("/signin")
        page.evaluate("() => document.fonts.ready")
        assert family in page.evaluate("() => getComputedStyle(document.body).fontFamily")  # the page names it
        # document.fonts.check is true for any family it has no face of; so load the installed font as a face of
        # its own (local(): rejected when not installed, as the control shows), then check that face.
        assert page.evaluate(LOADED, ["No Such Font 42", text]) == "not installed"
        assert page.evaluate(LOADED, [family, text]) is True
        widths = page.evaluate(GLYPHS, [text, other])
        if lang == "bo":  # Noto CJK's missing-glyph box is one em wide, as wide as a Han character: pixels below
            assert abs(widths["text"] - widths["tofu"]) > 2, widths  # missing-glyph boxes would be as wide
        first = _drawn(page, text, _artifact(lang, "glyphs-1"))
        second = _drawn(page, other, _artifact(lang, "glyphs-2"))
        tofu = _drawn(page, "\U0010fffd" * len(text), _artifact(lang, "glyphs-missing"))
        assert first != second and first != tofu  # boxes would all look alike
    finally:
        ctx.close()


# -- elders' mode ------------------------------------------------------------------------------------------------------
MEASURE = """() => {
  const rgba = (s) => {
    const m = (s.match(/[\\d.]+/g) || []).map(Number);
    return [m[0] || 0, m[1] || 0, m[2] || 0, m.length > 3 ? m[3] : (m.length ? 1 : 0)];
  };
  const lum = (rgb) => {
    const c = rgb.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = (el) => {  // the colour behind el: its own and its ancestors' backgrounds, over white
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let out = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) out = over(layers[i], out);
    return out;
  };
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const shown = (el) => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
                        && el.getBoundingClientRect().width > 0;
  const texts = [];
  for (const el of document.querySelectorAll("header *, main *")) {
    if (!shown(el) || el.closest("[hidden]") || ["SCRIPT", "STYLE", "TEXTAREA"].includes(el.tagName)) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const s = getComputedStyle(el);
    const size = parseFloat(s.fontSize);
    const line = s.lineHeight === "normal" ? 0 : parseFloat(s.lineHeight);
    const color = over(rgba(s.color), background(el));
    texts.push({tag: el.tagName, cls: el.className, text: el.textContent.trim().slice(0, 40), size: size,
                line: line / size, contrast: ratio(color, background(el))});
  }
  const targets = [];
  for (const el of document.querySelectorAll("a[href], button, input:not([type=hidden]), select, label.choice")) {
    if (!shown(el) || el.closest("[hidden]") || el.disabled) continue;
    if (el.matches("label.choice input")) continue;  // its label is the target, measured itself
    const r = el.getBoundingClientRect();
    targets.push({tag: el.tagName, id: el.id, cls: String(el.className), text: el.textContent.trim().slice(0, 30),
                  width: r.width, height: r.height, top: r.top + scrollY, left: r.left + scrollX,
                  inMain: !!el.closest("main")});
  }
  return {texts: texts, targets: targets, viewport: innerHeight};
}"""


def _measured(page, name: str) -> dict:
    data = page.evaluate(MEASURE)
    small = [t for t in data["texts"] if t["size"] < 18]
    assert not small, f"{name}: text under 18 px: {small}"
    tight = [t for t in data["texts"] if t["line"] < 1.3]
    assert not tight, f"{name}: line height under 1.3: {tight}"
    faint = [t for t in data["texts"] if t["contrast"] < 4.5]
    assert not faint, f"{name}: contrast under 4.5:1: {faint}"
    tiny = [t for t in data["targets"] if t["width"] < 60 or t["height"] < 60]
    assert not tiny, f"{name}: touch targets under 60 x 60 px: {tiny}"
    assert data["texts"] and data["targets"]
    return data


def test_elders_mode_is_one_tap_from_home_remembered_and_meets_the_guideline(browser, service) -> None:
    ctx = _context(browser, service, "zh", device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = ctx.new_page()
        _sign_in_resident(page)
        assert page.locator("html").get_attribute("class") != "elder"
        page.locator("#elder-switch").tap()  # one tap from the home page
        page.wait_for_function("() => document.documentElement?.classList.contains('elder') === true")
        assert page.url.endswith("/code")
        page.wait_for_function("() => document.getElementById('code').dataset.serial !== undefined")
        page.locator("#code-image").evaluate("img => img.decode()")
        page.screenshot(path=str(_artifact("zh", "elder-code")))
        data = _measured(page, "code")

        # Headline functions at 30 px or more: the page's title and its large actions.
        for selector in ("h1", ".actions-main .button"):
            sizes = page.locator(selector).evaluate_all("els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
            assert sizes and min(sizes) >= 30, (selector, sizes)

        # The first screen: the whole code and at most three large actions, nothing else to tap in the page.
        image = page.locator("#code-image").bounding_box()
        assert image is not None and image["y"] >= 0 and image["y"] + image["height"] <= data["viewport"]
        first = [t for t in data["targets"] if t["inMain"] and t["top"] < data["viewport"]]
        assert 1 <= len(first) <= 3, first
        assert all("big" in t["cls"] for t in first), first

        # Nothing moves under the finger while the code renews itself and its countdown runs.
        def layout() -> list[tuple[str, float, float, float, float]]:
            return [(t["text"], round(t["left"], 1), round(t["top"], 1), round(t["width"], 1), round(t["height"], 1))
                    for t in page.evaluate(MEASURE)["targets"]] + [
                ("code", image["x"], image["y"], image["width"], image["height"])]

        before, serial = layout(), page.locator("#code").get_attribute("data-serial")
        page.wait_for_function("s => document.getElementById('code').dataset.serial !== s", arg=serial,
                               timeout=base.RENEWAL_TIMEOUT * 1000)
        page.wait_for_timeout(1500)  # and a tick or two of the countdown
        after_box = page.locator("#code-image").bounding_box()
        assert after_box == image
        assert layout() == before

        # Remembered: the next page and a new visit keep the elders' mode.
        for path in ("/requests", "/certificates", "/history", "/rides"):
            page.goto(path)
            assert "elder" in (page.locator("html").get_attribute("class") or ""), path
            page.screenshot(path=str(_artifact("zh", "elder" + path.replace("/", "-"))), full_page=True)
            _measured(page, path)
        page.goto("/code")
        assert "elder" in (page.locator("html").get_attribute("class") or "")
        page.locator("#elder-switch").tap()  # and one tap back
        page.wait_for_function("() => document.documentElement?.classList.contains('elder') === false")
    finally:
        ctx.close()


def test_in_elders_mode_a_new_request_does_not_move_the_one_being_answered(browser, service) -> None:
    phone = _context(browser, service, "zh", device_scale_factor=2, is_mobile=True, has_touch=True)
    desk = _context(browser, service, "zh", viewport=DESKTOP)
    try:
        phone.add_cookies([{"name": "citycode_elder", "value": "1", "url": service.url}])
        resident, console = phone.new_page(), desk.new_page()
        _sign_in_resident(resident)
        console.goto("/console/signin")
        console.locator("button[data-clerk='Clerk Zhou']").click()
        console.wait_for_url("**/console")
        first = _clerk_asks(console, resident)
        resident.goto("/requests")
        approve = resident.locator(f"[data-request='{first}'] button.approve")
        approve.wait_for()
        approve.scroll_into_view_if_needed()
        before = approve.bounding_box()
        second = _clerk_asks(console, resident)
        resident.wait_for_selector(f"[data-request='{second}']", timeout=15_000)  # polled in, every 3 s
        assert approve.bounding_box() == before
        _measured(resident, "requests with two")
        resident.screenshot(path=str(_artifact("zh", "elder-requests-two")), full_page=True)
        card = resident.locator(f"[data-request='{second}']")
        card_before = card.bounding_box()
        for request_id in (first, second):  # answered elsewhere, the cards close in place
            answer = resident.context.request.post(f"/api/v1/me/consent-requests/{request_id}",
                                                   data={"decision": "refuse"})
            assert answer.ok, answer.text()
        resident.wait_for_function("() => document.querySelectorAll('.request-card.closed').length === 2",
                                   timeout=15_000)
        assert card.bounding_box() == card_before
        assert resident.locator(f"[data-request='{first}'] .closed-note").is_visible()
    finally:
        phone.close()
        desk.close()


def test_elders_mode_sign_in_page_meets_the_guideline_in_tibetan(browser, service) -> None:
    ctx = _context(browser, service, "bo", device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        ctx.add_cookies([{"name": "citycode_elder", "value": "1", "url": service.url}])
        page = ctx.new_page()
        page.goto("/signin")
        assert "elder" in (page.locator("html").get_attribute("class") or "")
        page.screenshot(path=str(_artifact("bo", "elder-signin")), full_page=True)
        _measured(page, "signin")
    finally:
        ctx.close()
