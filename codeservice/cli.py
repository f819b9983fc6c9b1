"""The ``citycode`` command. JSON on standard output; exit 0 success or all accepted,
1 a code refused, 2 a usage or input error (message on standard error)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from codeservice.config import ConfigError, Settings

EXIT_REFUSED = 1
EXIT_INPUT = 2


def _out(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


def _fail(message: str, error: str = "input_error") -> NoReturn:
    click.echo(json.dumps({"error": error, "message": message}, ensure_ascii=False), err=True)
    sys.exit(EXIT_INPUT)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        _fail(str(exc), "config_error")


def _services(initialise: bool = True):  # type: ignore[no-untyped-def]
    from codeservice.services import Services

    services = Services(_settings())
    if initialise:
        try:
            services.initialise()
        except Exception as exc:  # database unreachable, home not writable, ...
            _fail(f"cannot initialise {services.settings.home}: {exc.__class__.__name__}: {exc}", "init_error")
    return services


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="citycode")
def main() -> None:
    """citycode: the city's one code. Settings come from CITYCODE_* environment variables."""


@main.command()
def init() -> None:
    """Create the data directory, database schema, keys and demo residents (idempotent)."""
    services = _services(initialise=False)
    try:
        _out(services.initialise())
    except Exception as exc:
        _fail(f"cannot initialise {services.settings.home}: {exc.__class__.__name__}: {exc}", "init_error")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", type=click.IntRange(1, 64),
              help="worker processes (needs CITYCODE_REDIS_URL for more than 1)")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int | None, threads: int) -> None:
    """Serve the web app and API with gunicorn."""
    services = _services()
    settings = services.settings
    if workers is None:
        workers = (2 * (os.cpu_count() or 1) + 1) if settings.redis_url else 1
    if workers > 1 and not settings.redis_url:
        _fail("in-process state serves one process only; set CITYCODE_REDIS_URL to run several workers", "usage")
    from codeservice.wsgi import serve as run_gunicorn

    services.db.dispose()  # each worker opens its own connections

    click.echo(f"citycode serving on http://{host}:{port}/  (data: {settings.home}, workers: {workers})", err=True)
    run_gunicorn(host, port, workers, threads)


# -- keys and trust ------------------------------------------------------------------------
@main.group()
def keys() -> None:
    """Issuer signing keys."""


@keys.command("list")
def keys_list() -> None:
    """List every key with its issuer and validity."""
    _out(_services().keyring.list_keys())


@keys.command("rotate")
@click.option("--issuer", default="city-id", show_default=True)
def keys_rotate(issuer: str) -> None:
    """Start signing with a new key; the old one stays trusted until its codes have expired."""
    from issuers.keyring import KeyringError

    services = _services()
    try:
        kid = services.keyring.rotate(issuer, grace=services.settings.grace_for(issuer))
    except KeyringError as exc:
        _fail(str(exc))
    _out({"issuer": issuer, "kid": kid.hex(), "previous_key_trusted_for_seconds": services.settings.grace_for(issuer)})


@main.group()
def trust() -> None:
    """The trust list gates load."""


@trust.command("export")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--anchor-out", type=click.Path(dir_okay=False, path_type=Path), help="also write the anchor public key")
def trust_export(output: Path, anchor_out: Path | None) -> None:
    """Write the signed trust list (a trustlist+jwt) to a file for gates."""
    services = _services()
    token = services.trust_list_token()
    try:
        output.write_text(token + "\n")
        if anchor_out is not None:
            anchor_out.write_bytes(services.keyring.anchor_public_pem())
    except OSError as exc:
        _fail(f"cannot write: {exc.strerror}")
    from sdk.trustlist import TrustList, describe, load_anchor

    summary = describe(TrustList.load(token, load_anchor(services.keyring.anchor_public_pem())))
    _out({"written": str(output), "anchor_file": str(anchor_out) if anchor_out else None, **summary})


# -- residents and codes ---------------------------------------------------------------------
@main.group()
def resident() -> None:
    """Residents."""


@resident.command("add")
@click.option("--name")
@click.option("--birth-date", help="YYYY-MM-DD")
def resident_add(name: str | None, birth_date: str | None) -> None:
    """Add a resident and print it, with its new pseudonymous id."""
    from codeservice.certificates import city_today
    from codeservice.residents import ResidentError, add_resident, to_json

    born = None
    if birth_date is not None:
        try:
            born = dt.date.fromisoformat(birth_date)
        except ValueError:
            _fail(f"--birth-date must be YYYY-MM-DD, got {birth_date!r}")
        if born > city_today():
            _fail("--birth-date lies in the future")
    services = _services()
    try:
        with services.db.session() as db:
            _out(to_json(add_resident(db, name, born)))
    except ResidentError as exc:
        _fail(str(exc))


@main.group()
def code() -> None:
    """Identity codes."""


def _numbered(path: Path, i: int, count: int) -> Path:
    return path if count == 1 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}")


@code.command("issue")
@click.argument("resident_id")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 10000))
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--svg", "svg_path", type=click.Path(dir_okay=False, path_type=Path))
def code_issue(resident_id: str, count: int, png_path: Path | None, svg_path: Path | None) -> None:
    """Sign identity codes for RESIDENT_ID and print their text, one per line.

    With --count above 1, image files are numbered: code-1.png, code-2.png, ...
    """
    from codeservice.residents import get_resident
    from issuers import render

    services = _services()
    with services.db.session() as db:
        found = get_resident(db, resident_id)
        if found is None:
            _fail(f"no resident {resident_id!r}")
        if found.frozen:
            _fail(f"resident {resident_id} is frozen")
    for i in range(count):
        text = services.issue_identity_code(resident_id)
        try:
            if png_path is not None:
                _numbered(png_path, i, count).write_bytes(render.png(text))
            if svg_path is not None:
                _numbered(svg_path, i, count).write_text(render.svg(text))
        except OSError as exc:
            _fail(f"cannot write image: {exc.strerror}")
        click.echo(text)


# -- verification ----------------------------------------------------------------------------
def _parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--at must be an ISO-8601 time, got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _scene_from_file(path: Path):  # type: ignore[no-untyped-def]
    """The scene a JSON file defines (``sdk.scene.Scene.from_dict``); exit 2 with the reason otherwise."""
    from sdk.scene import Scene, SceneError

    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        _fail(f"cannot read scene file {path}: {exc.strerror or exc}", "scene_error")
    except (UnicodeDecodeError, ValueError) as exc:
        _fail(f"scene file {path} is not JSON: {exc}", "scene_error")
    if not isinstance(data, dict):
        _fail(f"scene file {path} must hold a JSON object (name, kinds, ...)", "scene_error")
    try:
        return Scene.from_dict(data)
    except SceneError as exc:
        _fail(f"scene file {path}: {exc}", "scene_error")


@main.command()
@click.argument("text", required=False)
@click.option("--trust", "trust_path", type=click.Path(dir_okay=False, path_type=Path),
              help="trust list file (default: this service's own keys)")
@click.option("--anchor", "anchor_path", type=click.Path(dir_okay=False, path_type=Path),
              help="trust anchor public key PEM (default: this service's anchor)")
@click.option("--scene", help="scene policy, e.g. bus or service-window")
@click.option("--scene-file", "scene_path", type=click.Path(dir_okay=False, path_type=Path),
              help="a scene defined in a JSON file (sdk.scene.Scene.from_dict: name, kinds, single_use, "
                   "cert_rules, max_status_age, ...) instead of --scene NAME")
@click.option("--at", "at_text", help="verify as at this ISO-8601 time")
@click.option("--image", "image_path", type=click.Path(dir_okay=False, path_type=Path),
              help="read the code from an image")
@click.option("--batch", "batch_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="one code per line ('-' for standard input)")
@click.option("--leeway", type=click.IntRange(0, 600), help="clock leeway in seconds")
@click.option("--decoder", type=click.Choice(["auto", "zxing", "pyzbar"]), default="auto", show_default=True)
@click.option("--status", "status_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a status list file (statuslist+jwt, as 'citycode status export' writes); repeatable. "
                   "Default: this service's current lists when it verifies with its own keys, else none")
def verify(
    text: str | None, trust_path: Path | None, anchor_path: Path | None, scene: str | None, scene_path: Path | None,
    at_text: str | None, image_path: Path | None, batch_path: str | None, leeway: int | None, decoder: str,
    status_paths: tuple[Path, ...],
) -> None:
    """Verify codes offline, as a gate does, and print one JSON result per code."""
    from sdk import TrustList, TrustListError, Verifier, load_anchor
    from sdk.statuslist import StatusCache, StatusListError
    from verifiers.scenes import SCENES

    sources = [s for s in (text, image_path, batch_path) if s is not None]
    if len(sources) != 1:
        _fail("give exactly one of TEXT, --image FILE or --batch FILE", "usage")
    at = _parse_time(at_text)
    scene_policy = None
    if scene is not None and scene_path is not None:
        _fail("give --scene NAME or --scene-file FILE, not both", "usage")
    if scene is not None:
        if scene not in SCENES:
            _fail(f"unknown scene {scene!r}; known: {', '.join(SCENES)}", "usage")
        scene_policy = SCENES[scene]
    elif scene_path is not None:
        scene_policy = _scene_from_file(scene_path)
    settings = _settings()
    try:
        if anchor_path is not None:
            anchor = load_anchor(anchor_path)
        elif settings.keys_dir.exists():
            # This machine holds the service's keys: its anchor is the pinned one (nothing is created).
            anchor = load_anchor(_services(initialise=False).keyring.anchor_public_pem())
        elif trust_path is not None:
            _fail("--trust needs --anchor FILE: the pinned trust-anchor public key the list must be signed by",
                  "usage")
        else:
            _fail("no trust anchor: give --trust FILE --anchor FILE, or run 'citycode init'")
        if trust_path is not None:
            # The file must be valid now, as when a gate loads it; --at then moves the gate's clock.
            trust_list = TrustList.load_file(trust_path, anchor)
        else:
            trust_list = TrustList.load(_services().trust_list_token(now=at), anchor, at=at)
    except (TrustListError, OSError) as exc:
        _fail(str(exc), "trust_list_error")
    status_cache = StatusCache()
    for status_path in status_paths:
        # Like the trust list, a status file must be valid now, when the gate loads it.
        try:
            status_cache.load(status_path.read_bytes(), trust_list)
        except (StatusListError, OSError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            _fail(f"status list {status_path}: {detail}", "status_list_error")
    if not status_paths and trust_path is None:
        from contextlib import suppress

        for token in _services().status_tokens(now=at):
            with suppress(StatusListError):  # --at before a department's key existed: its codes say status_unknown
                status_cache.load(token, trust_list, at=at)
    verifier = Verifier(trust_list, leeway=settings.leeway if leeway is None else leeway, status=status_cache)

    results = []
    if image_path is not None:
        if not image_path.is_file():
            _fail(f"no such image file: {image_path}")
        results.append(verifier.verify_image(image_path, scene_policy, at=at, decoder=decoder))
    elif batch_path is not None:
        try:
            stream = sys.stdin if batch_path == "-" else open(batch_path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            _fail(f"cannot read {batch_path}: {exc.strerror}")
        with stream:
            for line in stream:
                result = verifier.verify(line.rstrip("\r\n"), scene_policy, at=at)
                _out(result.to_dict())
                results.append(result)
        sys.exit(0 if all(r.accepted for r in results) else EXIT_REFUSED)
    else:
        results.append(verifier.verify(text, scene_policy, at=at))
    for result in results:
        _out(result.to_dict())
    sys.exit(0 if all(r.accepted for r in results) else EXIT_REFUSED)


import codeservice.cli_certs  # noqa: E402  (registers dept, cert-type, cert, status, apikey, ...)
import codeservice.cli_consent  # noqa: E402  (registers office, client, audit)
import codeservice.cli_transit  # noqa: E402,F401  (registers operator, transit, ride, gate, clearing)

if __name__ == "__main__":
    main()
