"""The pages' languages, catalogs, error pages, elders' mode switch and city times, without a browser.

The catalogs are the repository's .po files (codeservice/translations); extraction runs over the views, the
templates and the scripts as `python -m codeservice.catalogs extract` does (codeservice/babel.cfg).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo

from codeservice import catalogs, i18n
from codeservice.app import create_app
from codeservice.config import ConfigError, Settings
from sdk.reasons import Reason
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "codeservice" / "templates"
STATIC = ROOT / "codeservice" / "static"
HAN = re.compile(r"[\u4e00-\u9fff]")
TIBETAN = re.compile(r"[\u0f00-\u0fff]")
PY_FIELDS = re.compile(r"%\((\w+)\)[sd]")
JS_FIELDS = re.compile(r"\{(\w+)\}")


@pytest.fixture(scope="module")
def extracted() -> list[str | tuple[str, ...]]:
    return [m.id for m in catalogs.extract() if m.id]


def _key(msgid: str | tuple[str, ...] | list[str]) -> str:
    return msgid if isinstance(msgid, str) else msgid[0]


# -- catalogs ----------------------------------------------------------------------------------------------------
def test_extraction_finds_no_string_the_catalog_template_lacks(extracted) -> None:
    with catalogs.TEMPLATE.open("rb") as handle:
        from babel.messages.pofile import read_po

        template = read_po(handle)
    known = {_key(m.id) for m in template if m.id}
    new = sorted({_key(m) for m in extracted} - known)
    assert not new, f"run 'python -m codeservice.catalogs extract' and translate: {new}"
    assert len(extracted) > 150  # the extraction did look at the views, templates and scripts


@pytest.mark.parametrize("locale", catalogs.TRANSLATED)
def test_chinese_and_tibetan_translate_every_entry(locale: str, extracted) -> None:
    catalog = catalogs.read(locale)
    assert catalogs.missing(catalog, extracted) == []
    assert not list(catalog.obsolete)


def test_a_missing_or_empty_entry_is_found() -> None:
    catalog = catalogs.read("zh")
    assert catalogs.missing(catalog, ["Sign in", "A string nobody translated"]) == ["A string nobody translated"]
    catalog["Sign in"].string = ""
    assert catalogs.missing(catalog, ["Sign in"]) == ["Sign in"]


@pytest.mark.parametrize("locale", catalogs.TRANSLATED)
def test_translations_keep_every_placeholder_and_are_in_their_script(locale: str) -> None:
    script = HAN if locale == "zh" else TIBETAN
    for message in catalogs.read(locale):
        if not message.id:
            continue
        source = message.id if isinstance(message.id, str) else message.id[0]
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        for text in strings:
            assert sorted(PY_FIELDS.findall(text)) == sorted(PY_FIELDS.findall(source)), (locale, source, text)
            assert sorted(JS_FIELDS.findall(text)) == sorted(JS_FIELDS.findall(source)), (locale, source, text)
            if re.search(r"[A-Za-z]{2}", PY_FIELDS.sub("", JS_FIELDS.sub("", source))):  # words, not only fields
                assert script.search(text), f"{locale}: {text!r} (for {source!r}) is not in its script"


def test_compiled_catalogs_carry_the_translations(tmp_path: Path) -> None:
    written = catalogs.compile_all(tmp_path)
    assert [p.parent.parent.name for p in written] == list(catalogs.TRANSLATED)
    with (tmp_path / "bo" / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
        assert read_mo(handle)["Sign in"].string == "ཐོ་འགོད།"
    assert not catalogs.stale(tmp_path)
    (tmp_path / "zh" / "LC_MESSAGES" / "messages.mo").unlink()
    assert catalogs.stale(tmp_path)


def test_the_app_compiles_stale_catalogs_into_its_data_directory_when_the_package_is_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalogs, "stale", lambda directory=catalogs.TRANSLATIONS: directory == catalogs.TRANSLATIONS
                        or not (directory / "zh" / "LC_MESSAGES" / "messages.mo").exists())
    monkeypatch.setattr(i18n, "_writable", lambda directory: False)
    settings = make_settings(tmp_path / "home")
    app = create_app(settings)
    assert app.config["BABEL_TRANSLATION_DIRECTORIES"] == str(settings.home / "translations")
    assert (settings.home / "translations" / "bo" / "LC_MESSAGES" / "messages.mo").exists()
    page = app.test_client().get("/signin", headers={"Accept-Language": "bo"}).get_data(as_text=True)
    assert "<h1>ཐོ་འགོད།</h1>" in page


# -- nothing user-visible outside the catalog ------------------------------------------------------------------------
JINJA = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.S)
TAG = re.compile(r"<[^>]*>", re.S)
LETTERS = re.compile(r"[A-Za-z\u4e00-\u9fff\u0f00-\u0fff]")
SHOWN_ATTRIBUTES = re.compile(r'\b(placeholder|alt|aria-label|title)="([^"]*)"')


def bare_text(source: str) -> list[str]:
    """Text of a template that a reader sees and that is not a gettext call (nor data from a variable)."""
    found = []
    for name, value in SHOWN_ATTRIBUTES.findall(source):
        if LETTERS.search(JINJA.sub("", value)):
            found.append(f'{name}="{value}"')
    # <script type="application/json"> holds data, never text on screen
    body = re.sub(r"<script\b.*?</script>", "", source, flags=re.S)
    for chunk in TAG.split(JINJA.sub("\n", body)):
        for line in chunk.splitlines():
            if LETTERS.search(line):
                found.append(line.strip())
    return found


def test_the_bare_text_scan_finds_what_it_should() -> None:
    assert bare_text('<p class="x">Hello {{ name }}</p>') == ["Hello"]
    assert bare_text('<input placeholder="Scan it">') == ['placeholder="Scan it"']
    assert bare_text("<h1>我的码</h1>") == ["我的码"]
    assert bare_text('<p>{{ _("Hello") }} · {{ x }} →</p><img alt="{{ _(\'Code\') }}">') == []


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_show_no_text_outside_gettext(template: str) -> None:
    assert bare_text((TEMPLATES / template).read_text()) == []


SENTENCE = re.compile(r'"([A-Z][a-z]+[ ,;:][^"]*|[^"]*[a-z]{2,} [a-z]{2,}[^"]*)"')
LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def bare_strings(source: str) -> list[str]:
    """String literals of a script that read like words for people and are not the msgid of a t("...") (nor
    an Error's message, which the scripts catch and never show, nor a class name)."""
    source = re.sub(r"^\s*//.*$", "", source, flags=re.M)
    found = []
    for match in LITERAL.finditer(source):
        before = source[max(0, match.start() - 20):match.start()]
        wrapped = re.search(r"((?<![\w.$])t\(|\bError\(|\.className = )$", before)
        if not wrapped and match.group() != '"use strict"' and SENTENCE.fullmatch(match.group()):
            found.append(match.group())
    return found


def test_the_script_scan_finds_what_it_should() -> None:
    assert bare_strings('status.textContent = "Valid for " + left;') == ['"Valid for "']
    assert bare_strings('status.textContent = t("Valid for {seconds} s", {seconds: 1});') == []
    assert bare_strings('headers: { "Content-Type": "application/json" }') == []
    assert bare_strings('throw new Error("signed out"); el.className = "status pending";') == []
    assert bare_strings('el("p", "error", "Do not use: " + problem)') == ['"Do not use: "']


@pytest.mark.parametrize("script", sorted(p.name for p in STATIC.glob("*.js")))
def test_scripts_show_no_text_outside_the_catalog(script: str) -> None:
    assert bare_strings((STATIC / script).read_text()) == []


def test_every_reason_a_gate_or_clerk_shows_has_a_translation() -> None:
    assert set(i18n.REASON_TEXT) == set(Reason)
    zh = catalogs.read("zh")
    for reason, text in i18n.REASON_TEXT.items():
        assert zh.get(text._args[0]).string, reason  # lazy_gettext("...") keeps its msgid


# -- choosing the language -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cookie", "accept", "chosen"), [
    (None, [], "zh"),
    (None, [("fr-FR", 1.0)], "zh"),
    (None, [("zh-CN", 1.0), ("zh", 0.9)], "zh"),
    (None, [("zh-TW", 1.0)], "zh"),
    (None, [("bo-CN", 1.0)], "bo"),
    (None, [("en-US", 1.0), ("en", 0.9)], "en"),
    (None, [("en-GB", 1.0), ("zh", 0.5)], "en"),
    (None, [("zh", 0.5), ("bo", 0.8)], "bo"),
    (None, [("en", 0.0), ("bo", 0.1)], "bo"),
    ("en", [("bo", 1.0)], "en"),
    ("xx", [("bo", 1.0)], "bo"),
    ("<script>", [], "zh"),
])
def test_the_cookie_then_accept_language_then_chinese(cookie, accept, chosen) -> None:
    assert i18n.language_from(cookie, accept) == chosen


@pytest.fixture
def page_client(tmp_path: Path):  # type: ignore[no-untyped-def]
    app = create_app(make_settings(tmp_path / "home"))
    yield app.test_client()
    app.extensions["citycode"].db.dispose()


def _html_lang(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match, html[:200]
    return match.group(1)


def test_pages_are_chinese_by_default_and_follow_the_browser(page_client) -> None:
    default = page_client.get("/signin").get_data(as_text=True)
    assert _html_lang(default) == "zh-Hans" and "<h1>登录</h1>" in default
    tibetan = page_client.get("/signin", headers={"Accept-Language": "bo"}).get_data(as_text=True)
    assert _html_lang(tibetan) == "bo" and "<h1>ཐོ་འགོད།</h1>" in tibetan
    answer = page_client.get("/signin", headers={"Accept-Language": "en-US,en;q=0.9"})
    english = answer.get_data(as_text=True)
    assert _html_lang(english) == "en" and "<h1>Sign in</h1>" in english
    assert {"Accept-Language", "Cookie"} <= set(answer.vary)  # no cache hands one reader's page to another
    # The scripts' catalog comes with the page, in its language.
    assert '"Valid for {seconds} s": "{seconds} \\u79d2\\u5185\\u6709\\u6548"' in default


def test_the_switch_is_remembered_and_only_goes_back_to_this_site(page_client) -> None:
    answer = page_client.get("/lang/bo?next=/console/signin")
    assert answer.status_code == 303 and answer.headers["Location"] == "/console/signin"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("citycode_lang=bo;") and "SameSite=Lax" in cookie and "Max-Age=" in cookie
    page = page_client.get("/console/signin", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert _html_lang(page) == "bo"  # the switch wins over the browser
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", ""):
        answer = page_client.get("/lang/en", query_string={"next": elsewhere})
        assert answer.headers["Location"] == "/", elsewhere
    assert page_client.get("/lang/fr").status_code == 404


def test_the_elders_switch_is_remembered(page_client) -> None:
    assert 'class="elder"' not in page_client.get("/signin").get_data(as_text=True)
    answer = page_client.get("/elder?on=1&next=/signin")
    assert answer.status_code == 303 and answer.headers["Set-Cookie"].startswith("citycode_elder=1;")
    page = page_client.get("/signin").get_data(as_text=True)
    assert '<html lang="zh-Hans" data-city-tz="Asia/Shanghai" class="elder">' in page
    assert 'href="/elder?on=0&amp;next=/signin"' in page  # and one tap back
    page_client.get("/elder?on=0")
    assert 'class="elder"' not in page_client.get("/signin").get_data(as_text=True)


# -- error pages ------------------------------------------------------------------------------------------------------
def test_a_wrong_address_is_a_styled_page_in_the_readers_language_with_a_way_back(page_client) -> None:
    for accept, title in (("zh-CN", "找不到页面"), ("bo", "ཤོག་ངོས་རྙེད་མ་སོང་།"), ("en", "Page not found")):
        response = page_client.get("/no/such/page", headers={"Accept-Language": accept})
        assert response.status_code == 404 and response.mimetype == "text/html"
        html = response.get_data(as_text=True)
        assert f"<h1>{title}</h1>" in html and 'id="error-home"' in html and 'href="/"' in html
        assert "stylesheet" in html
    api = page_client.get("/api/v1/no/such", headers={"Accept-Language": "zh-CN"})
    assert api.status_code == 404 and api.is_json and api.json["error"] == "not_found"


def test_a_wrong_method_and_an_expired_form_are_pages_too(page_client) -> None:
    response = page_client.delete("/signin")
    assert response.status_code == 405 and response.mimetype == "text/html"
    assert "GET" in response.headers["Allow"] and "无法这样操作" in response.get_data(as_text=True)
    expired = page_client.post("/signin/dev", data={"csrf": "stale", "resident": "x"})
    assert expired.status_code == 400 and "表单可能已过期" in expired.get_data(as_text=True)
    api = page_client.delete("/api/v1/health")
    assert api.status_code == 405 and api.is_json and api.json["error"] == "method_not_allowed"


def test_a_page_that_breaks_is_a_500_page_and_the_api_keeps_its_json(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "home"))

    @app.get("/broken")
    def broken() -> str:
        raise RuntimeError("boom")

    @app.get("/api/v1/broken")
    def broken_api() -> str:
        raise RuntimeError("boom")

    client = app.test_client()
    page = client.get("/broken", headers={"Accept-Language": "bo"})
    assert page.status_code == 500 and page.mimetype == "text/html"
    assert "ཞབས་ཞུའི་ཕྱོགས་སུ་སྐྱོན་ཞིག་བྱུང་།" in page.get_data(as_text=True) and "boom" not in page.get_data(as_text=True)
    api = client.get("/api/v1/broken")
    assert api.status_code == 500 and api.json == {"error": "internal_error",
                                                   "message": "internal error; the event was logged"}
    app.extensions["citycode"].db.dispose()


# -- the city's clock --------------------------------------------------------------------------------------------------
def test_the_city_zone_is_configurable_and_checked(tmp_path: Path) -> None:
    assert Settings.from_env({"CITYCODE_HOME": str(tmp_path)}).city_tz == "Asia/Shanghai"
    assert Settings.from_env({"CITYCODE_HOME": str(tmp_path), "CITYCODE_CITY_TZ": "Asia/Urumqi"}).city_tz == \
        "Asia/Urumqi"
    with pytest.raises(ConfigError, match="CITYCODE_CITY_TZ"):
        Settings.from_env({"CITYCODE_HOME": str(tmp_path), "CITYCODE_CITY_TZ": "Mars/Olympus"})


def test_times_are_formatted_in_the_city_zone_in_one_24_hour_style(tmp_path: Path) -> None:
    moment = dt.datetime(2026, 11, 23, 17, 30, tzinfo=dt.UTC)
    for zone, shown in (("Asia/Shanghai", "2026-11-24 01:30"), ("Asia/Kathmandu", "2026-11-23 23:15")):
        app = create_app(make_settings(tmp_path / zone.replace("/", "-"), city_tz=zone))
        for lang in ("zh", "bo", "en"):
            with app.test_request_context("/", headers={"Accept-Language": lang}):
                assert i18n.city_datetime(moment) == shown
                assert i18n.city_datetime(moment.isoformat()) == shown
                assert i18n.city_datetime(moment.timestamp()) == shown
                assert i18n.city_datetime(moment.replace(tzinfo=None)) == shown  # SQLite's naive UTC
                assert i18n.city_clock(moment) == shown[-5:]
        app.extensions["citycode"].db.dispose()
