"""The message catalogs of the pages: extraction, checks and compilation, with Babel and no Flask.

Sources (``babel.cfg`` at the repository's root): the views (``_``, ``gettext``, ``lazy_gettext``), the
templates (Jinja's ``_``) and the scripts of ``static/`` (``t("...")``, the catalog the page hands to
``static/i18n.js``). English is the source language: msgids are English, and ``translations/<locale>/
LC_MESSAGES/messages.po`` holds Simplified Chinese (``zh``, the default) and Tibetan (``bo``).

``python -m codeservice.catalogs extract`` writes ``messages.pot`` and merges it into every ``.po``;
``compile`` makes the ``.mo`` files (scripts/setup and the Dockerfile run it; the app compiles stale ones
on start, see ``codeservice.i18n``); ``check`` exits 1 when the sources have a string the catalogs lack.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
TRANSLATIONS = PACKAGE / "translations"
TEMPLATE = TRANSLATIONS / "messages.pot"
MAPPING = PACKAGE / "babel.cfg"
#: Locales with a catalog of their own; English is the msgids themselves.
TRANSLATED = ("zh", "bo")
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "t": None}


def extract() -> Catalog:
    """Every user-visible string of the views, templates and scripts, as a fresh catalog template."""
    with MAPPING.open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    catalog = Catalog(project="citycode", msgid_bugs_address="", charset="utf-8", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        PACKAGE, method_map, options_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",), strip_comment_tags=True
    ):
        catalog.add(message, None, [(f"codeservice/{filename}", lineno)], auto_comments=comments, context=context)
    return catalog


def po_path(locale: str, directory: Path = TRANSLATIONS) -> Path:
    return directory / locale / "LC_MESSAGES" / "messages.po"


def read(locale: str) -> Catalog:
    with po_path(locale).open("rb") as handle:
        return read_po(handle, locale=locale)


def missing(catalog: Catalog, wanted: Iterable[Any]) -> list[str]:
    """The msgids of *wanted* that *catalog* lacks or leaves untranslated (or fuzzy)."""
    out = []
    for msgid in wanted:
        message = catalog.get(msgid)
        strings = message.string if message is not None else None
        empty = not all(strings) if isinstance(strings, (tuple, list)) else not strings
        if message is None or empty or message.fuzzy:
            out.append(msgid if isinstance(msgid, str) else msgid[0])
    return out


def update() -> None:
    """Write the template and merge it into each locale's catalog (new entries come in untranslated)."""
    template = extract()
    with TEMPLATE.open("wb") as handle:
        write_po(handle, template, width=120, omit_header=False, sort_output=False)
    for locale in TRANSLATED:
        path = po_path(locale)
        catalog = read(locale) if path.exists() else Catalog(locale=locale)
        catalog.update(template, no_fuzzy_matching=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            write_po(handle, catalog, width=120, ignore_obsolete=True)


def compile_all(target: Path = TRANSLATIONS) -> list[Path]:
    """Compile every ``.po`` into ``target/<locale>/LC_MESSAGES/messages.mo``; the files written."""
    written = []
    for locale in TRANSLATED:
        catalog = read(locale)
        out = target / locale / "LC_MESSAGES" / "messages.mo"
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".messages.mo.{os.getpid()}")  # whole or not at all: workers may start together
        with part.open("wb") as handle:
            write_mo(handle, catalog)
        os.replace(part, out)
        written.append(out)
    return written


def stale(directory: Path = TRANSLATIONS) -> bool:
    """True when a ``.mo`` in *directory* is missing or older than its ``.po``."""
    for locale in TRANSLATED:
        mo = directory / locale / "LC_MESSAGES" / "messages.mo"
        if not mo.exists() or mo.stat().st_mtime_ns < po_path(locale).stat().st_mtime_ns:
            return True
    return False


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "extract":
        update()
        return 0
    if command == "compile":
        for path in compile_all():
            print(f"compiled {path.relative_to(ROOT)}")
        return 0
    if command == "check":
        wanted = [m.id for m in extract() if m.id]
        problems = {locale: missing(read(locale), wanted) for locale in TRANSLATED}
        for locale, ids in problems.items():
            for msgid in ids:
                print(f"{locale}: not translated: {msgid!r}")
        return 1 if any(problems.values()) else 0
    print("usage: python -m codeservice.catalogs extract|compile|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
