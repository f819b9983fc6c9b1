"""The pages' language, the elders' mode (长辈版) and the city's clock on every page.

- Language: Simplified Chinese (``zh``) unless the ``citycode_lang`` cookie (set by the switch on every page,
  ``GET /lang/<code>``) or, without it, the browser's Accept-Language picks Tibetan (``bo``) or English
  (``en``). Catalogs: ``codeservice/translations`` (``codeservice/catalogs.py``); stale or missing ``.mo``
  files are compiled on start, into ``$CITYCODE_HOME/translations`` when the package is not writable.
- Elders' mode: the ``citycode_elder`` cookie (``GET /elder?on=1``), ``class="elder"`` on ``<html>``.
- Times: one 24-hour style, ``yyyy-MM-dd HH:mm`` and ``HH:mm``, formatted by Babel in the city's zone
  (``CITYCODE_CITY_TZ``); the scripts format in the same style with Intl (``static/i18n.js``).

The JSON API is not translated: its ``error`` codes and messages stay as they are.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.dates import format_datetime
from babel.messages.extract import extract_javascript
from flask import Blueprint, Flask, abort, current_app, redirect, request
from flask_babel import Babel, get_locale, gettext, lazy_gettext
from werkzeug.wrappers import Response

from codeservice import catalogs
from codeservice.config import Settings
from sdk.citytime import zone
from sdk.reasons import DESCRIPTIONS, Reason

log = logging.getLogger("citycode")


@dataclass(frozen=True)
class Language:
    code: str  # the catalog's locale
    tag: str  # BCP 47, for <html lang>
    name: str  # its own name, on the switch


LANGUAGES = {
    "zh": Language("zh", "zh-Hans", "简体中文"),
    "bo": Language("bo", "bo", "བོད་ཡིག"),
    "en": Language("en", "en", "English"),
}
DEFAULT_LANGUAGE = "zh"
LANG_COOKIE = "citycode_lang"
ELDER_COOKIE = "citycode_elder"
COOKIE_SECONDS = 400 * 24 * 3600  # as long as browsers keep a cookie
DATETIME_PATTERN = "yyyy-MM-dd HH:mm"
CLOCK_PATTERN = "HH:mm"
STATIC = Path(__file__).resolve().parent / "static"

i18n = Blueprint("i18n", __name__)


def _settings() -> Settings:
    return current_app.extensions["citycode_settings"]  # type: ignore[no-any-return]


# -- which language ------------------------------------------------------------------------------------------
def language_from(cookie: str | None, accept: list[tuple[str, float]]) -> str:
    """The cookie's language if it names one of ours, else the first of Accept-Language (by quality) that is
    ours (by its primary subtag: zh-CN, zh-TW, zh-Hans are Chinese), else Chinese."""
    if cookie in LANGUAGES:
        return cookie
    for value, quality in sorted(accept, key=lambda pair: -pair[1]):
        primary = value.replace("_", "-").split("-")[0].lower()
        if quality > 0 and primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def select_language() -> str:
    return language_from(request.cookies.get(LANG_COOKIE), list(request.accept_languages))


def current_language() -> Language:
    return LANGUAGES.get(str(get_locale()), LANGUAGES[DEFAULT_LANGUAGE])


def elder_mode() -> bool:
    return request.cookies.get(ELDER_COOKIE) == "1"


# -- the city's clock ------------------------------------------------------------------------------------------
def _moment(value: dt.datetime | str | float | int) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite gives naive UTC


def city_datetime(value: dt.datetime | str | float | int | None, pattern: str = DATETIME_PATTERN) -> str:
    """*value* (aware or naive-UTC datetime, ISO text, UNIX time) in city time: ``2026-12-07 12:50``."""
    if value is None or value == "":
        return ""
    return format_datetime(_moment(value), pattern, tzinfo=zone(_settings().city_tz), locale=str(get_locale()))


def city_clock(value: dt.datetime | str | float | int | None) -> str:
    """The time of day in city time, 24-hour: ``12:50``."""
    return city_datetime(value, CLOCK_PATTERN)


# -- reasons a gate or a clerk shows -----------------------------------------------------------------------------
#: Every ``sdk.reasons.Reason`` in the reader's language; the codes themselves never change (the API sends them).
REASON_TEXT = {
    Reason.OK: lazy_gettext("accepted"),
    Reason.NOT_A_CITYCODE: lazy_gettext("not a citycode"),
    Reason.MALFORMED: lazy_gettext("damaged or malformed citycode"),
    Reason.NO_CODE_FOUND: lazy_gettext("no QR code found in the image"),
    Reason.UNSUPPORTED_ALG: lazy_gettext("signature algorithm not accepted for this key"),
    Reason.UNKNOWN_KEY: lazy_gettext("signed by a key that is not trusted"),
    Reason.UNTRUSTED_ISSUER: lazy_gettext("issuer not trusted for this kind of code"),
    Reason.BAD_SIGNATURE: lazy_gettext("signature does not verify"),
    Reason.EXPIRED: lazy_gettext("code has expired"),
    Reason.NOT_YET_VALID: lazy_gettext("code is not valid yet"),
    Reason.WRONG_KIND: lazy_gettext("this kind of code is not accepted here"),
    Reason.REPLAYED: lazy_gettext("code already used"),
    Reason.TRUST_LIST_EXPIRED: lazy_gettext("trust list expired; refresh it"),
    Reason.REPLAY_GUARD_UNAVAILABLE: lazy_gettext("replay guard unavailable; try again"),
    Reason.REVOKED: lazy_gettext("revoked"),
    Reason.SUSPENDED: lazy_gettext("suspended"),
    Reason.STATUS_STALE: lazy_gettext("revocation status too old; connect to refresh"),
    Reason.STATUS_UNKNOWN: lazy_gettext("revocation status unknown"),
    Reason.CERTIFICATE_EXPIRED: lazy_gettext("certificate not valid on this date"),
    Reason.NOT_ENTITLED: lazy_gettext("does not show what this place requires"),
    Reason.CODE_STALE: lazy_gettext("code too old; show the live code"),
    Reason.CREDENTIAL_EXPIRED: lazy_gettext("ride authorisation expired; open the app online once"),
    Reason.CARD_NOT_ACCEPTED: lazy_gettext("this card type is not accepted here"),
    Reason.PRINTED_CARD_NOT_ACCEPTED: lazy_gettext("printed cards are not accepted here"),
    Reason.ID_CHECK_REQUIRED: lazy_gettext("check the identity card before accepting a printed card"),
    Reason.FARE_LIMIT_EXCEEDED: lazy_gettext("fare above this card’s per-ride limit"),
    Reason.PASSBACK: lazy_gettext("already inside; exit first"),
    Reason.CAPACITY_REACHED: lazy_gettext("full for today"),
    Reason.CITY_NOT_ACCEPTED: lazy_gettext("this city’s codes are not accepted here"),
}


def reason_text(code: str) -> str:
    """A reason code in the reader's language; an unknown code as the SDK describes it, or as itself."""
    try:
        reason = Reason(code)
    except ValueError:
        return code.replace("_", " ")
    text = REASON_TEXT.get(reason)
    return str(text) if text is not None else DESCRIPTIONS.get(reason, code)


#: A certificate's state as a resident reads it (``codeservice.certificates.pages``).
STATUS_TEXT = {
    "valid": lazy_gettext("valid"),
    "suspended": lazy_gettext("suspended"),
    "revoked": lazy_gettext("revoked"),
    "expired": lazy_gettext("expired"),
    "not_yet_valid": lazy_gettext("not yet valid"),
}


def status_text(status: str) -> str:
    text = STATUS_TEXT.get(status)
    return str(text) if text is not None else status.replace("_", " ")


# -- the scripts' catalog ----------------------------------------------------------------------------------------
@functools.cache
def script_messages() -> tuple[str, ...]:
    """Every ``t("...")`` of ``static/*.js``: what the page hands to its scripts, translated."""
    found: dict[str, None] = {}
    for path in sorted(STATIC.glob("*.js")):
        with path.open("rb") as handle:
            for _lineno, _funcname, message, _comments in extract_javascript(handle, {"t": None}, [], {}):
                if isinstance(message, str):
                    found[message] = None
    return tuple(found)


def script_catalog() -> dict[str, str]:
    return {msgid: gettext(msgid) for msgid in script_messages()}


# -- the switches ------------------------------------------------------------------------------------------------
def _back() -> str:
    """Where to go after a switch: the page's own path from ``next``, never another site."""
    target = request.args.get("next", "/")
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(c in target for c in "\r\n\\"):
        return "/"
    return target[:2000]


def _remember(response: Response, name: str, value: str) -> Response:
    response.set_cookie(name, value, max_age=COOKIE_SECONDS, samesite="Lax", httponly=True,
                        secure=_settings().secure_cookies)
    return response


@i18n.get("/lang/<code>")
def choose_language(code: str) -> Response:
    if code not in LANGUAGES:
        abort(404)
    return _remember(redirect(_back(), 303), LANG_COOKIE, code)


@i18n.get("/elder")
def choose_elder_mode() -> Response:
    on = request.args.get("on", "1") == "1"
    return _remember(redirect(_back(), 303), ELDER_COOKIE, "1" if on else "0")


def here() -> str:
    """This page's path and query, for the switches' ``next``."""
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def _page_context() -> dict[str, Any]:
    return {
        "language": current_language(),
        "languages": LANGUAGES.values(),
        "elder": elder_mode(),
        "here": here,
        "script_catalog": script_catalog,
        "city_tz": _settings().city_tz,
        "status_text": status_text,
    }


# -- wiring --------------------------------------------------------------------------------------------------------
def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK)


def _catalog_directory(settings: Settings) -> Path:
    """Where the compiled catalogs are: the package's own when fresh (scripts/setup, the image) or when it can
    compile them there, else a fresh copy under the data directory."""
    if not catalogs.stale():
        return catalogs.TRANSLATIONS
    if _writable(catalogs.TRANSLATIONS):
        try:
            catalogs.compile_all()
            return catalogs.TRANSLATIONS
        except OSError:
            pass
    spare = settings.home / "translations"
    if catalogs.stale(spare):
        catalogs.compile_all(spare)
    return spare


def _vary(response: Response) -> Response:
    """A page depends on the language and the elders' mode: caches must not hand one reader's to another."""
    if response.mimetype == "text/html":
        response.vary.add("Accept-Language")
        response.vary.add("Cookie")
    return response


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["citycode_settings"] = settings
    app.after_request(_vary)
    directory = _catalog_directory(settings)
    app.config.update(BABEL_TRANSLATION_DIRECTORIES=str(directory), BABEL_DEFAULT_LOCALE=DEFAULT_LANGUAGE)
    Babel(app, locale_selector=select_language)
    app.jinja_env.filters.update(citytime=city_datetime, cityclock=city_clock)
    app.context_processor(_page_context)
    app.register_blueprint(i18n)
