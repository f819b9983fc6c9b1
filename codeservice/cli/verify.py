"""``citycode verify``: decide on codes as a gate does, offline, with the SDK and an exported trust list."""

from __future__ import annotations

import io
import json
import os
import select
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click

from codeservice.cli.common import EXIT_REFUSED, echo_json, fail, load_services, load_settings, parse_time
from sdk import Reason, Result, TrustList, TrustListError, Verifier, load_anchor
from sdk.scene import Scene, SceneError
from sdk.statuslist import StatusCache, StatusListError
from verifiers.scenes import SCENES

#: ``json.dumps(data, ensure_ascii=False)`` makes a new encoder at every call; this one has the same options
#: and writes the same text.
_JSON = json.JSONEncoder(ensure_ascii=False)
_STR = json.encoder.encode_basestring  # what _JSON writes a string with (ensure_ascii=False)
#: The keys of Result.to_dict in its order, as result_line writes them.
_LINE_KEYS = ("accepted", "reason", "message", "detail", "kind", "subject", "issued_at", "expires_at", "kid", "issuer",
              "code_id", "scene", "cert_id", "cert_type", "holder", "fields", "status_age", "card_type", "fare_limit",
              "credential_id", "credential_expires_at", "home_city")
_LINE_IN_STEP = tuple(Result(accepted=False, reason=Reason.OK).to_dict()) == _LINE_KEYS


def result_line(result: Result) -> str:
    """``json.dumps(result.to_dict(), ensure_ascii=False)``, written field by field: the same text in half the
    time (no dictionary, no encoder set up per call). Strings, integers and None are written here as the
    encoder writes them; anything else (the disclosed fields, a value of another type) by the encoder itself.
    Should Result.to_dict ever have other keys than these, the encoder writes the whole line."""
    if not _LINE_IN_STEP:
        return _JSON.encode(result.to_dict())
    v = _json_value
    r = result
    return "".join((
        '{"accepted": ', "true" if r.accepted is True else "false" if r.accepted is False else v(r.accepted),
        ', "reason": ', v(r.reason.value),
        ', "message": ', v(r.message), ', "detail": ', v(r.detail), ', "kind": ', v(r.kind),
        ', "subject": ', v(r.subject), ', "issued_at": ', v(r.issued_at), ', "expires_at": ', v(r.expires_at),
        ', "kid": ', v(r.kid), ', "issuer": ', v(r.issuer), ', "code_id": ', v(r.code_id), ', "scene": ', v(r.scene),
        ', "cert_id": ', v(r.cert_id), ', "cert_type": ', v(r.cert_type), ', "holder": ', v(r.holder),
        ', "fields": ', v(r.fields), ', "status_age": ', v(r.status_age), ', "card_type": ', v(r.card_type),
        ', "fare_limit": ', v(r.fare_limit), ', "credential_id": ', v(r.credential_id),
        ', "credential_expires_at": ', v(r.credential_expires_at), ', "home_city": ', v(r.home_city), "}",
    ))


def _json_value(value: Any) -> str:
    kind = type(value)
    if value is None:
        return "null"
    if kind is str:
        return _STR(value)
    if kind is int:
        return int.__repr__(value)
    return _JSON.encode(value)


#: Result lines written at once (about 60 KB), unless the input may make us wait first.
BATCH_LINES = 100


def verify_batch(verifier: Verifier, stream: TextIO, scene: Scene | None, at: float | None) -> bool:
    """Verify one code a line and write one JSON result a line to standard output (through ``click.echo``, as
    every other output, so the same bytes); True when every code was accepted.

    Each line is written by :func:`result_line`, and the lines a hundred at a time rather than each with its
    own ``click.echo`` (which flushes: a write system call a line), and always before a read that may have to
    wait for its line (a scanner or a person at the other end of a pipe sees each answer as before) and at the
    end, also when interrupted."""
    all_accepted = True
    pending: list[str] = []
    may_wait = _may_wait(stream)
    try:
        for line in stream:
            result = verifier.verify(line.rstrip("\r\n"), scene, at=at)
            all_accepted = all_accepted and result.accepted
            pending.append(result_line(result))
            if len(pending) >= BATCH_LINES or may_wait():
                click.echo("\n".join(pending))
                pending.clear()
    finally:
        if pending:
            click.echo("\n".join(pending))
    return all_accepted


def _may_wait(stream: TextIO) -> Callable[[], bool]:
    """Whether reading the next line of *stream* may have to wait: never for a regular file or text in memory;
    for a pipe or a terminal when nothing is waiting to be read at the moment (or when that cannot be told)."""
    if isinstance(stream, io.StringIO):
        return lambda: False
    try:
        fd = stream.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return lambda: False
    except (OSError, ValueError, AttributeError):  # no file descriptor: a flush a line
        return lambda: True

    def nothing_waiting() -> bool:
        try:
            return not select.select([fd], [], [], 0)[0]
        except (OSError, ValueError):  # not selectable here (a pipe on Windows)
            return True

    return nothing_waiting


def _scene_from_file(path: Path):  # type: ignore[no-untyped-def]
    """The scene a JSON file defines (``sdk.scene.Scene.from_dict``); exit 2 with the reason otherwise."""

    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        fail(f"cannot read scene file {path}: {exc.strerror or exc}", "scene_error")
    except (UnicodeDecodeError, ValueError) as exc:
        fail(f"scene file {path} is not JSON: {exc}", "scene_error")
    if not isinstance(data, dict):
        fail(f"scene file {path} must hold a JSON object (name, kinds, ...)", "scene_error")
    try:
        return Scene.from_dict(data)
    except SceneError as exc:
        fail(f"scene file {path}: {exc}", "scene_error")


@click.command()
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

    sources = [s for s in (text, image_path, batch_path) if s is not None]
    if len(sources) != 1:
        fail("give exactly one of TEXT, --image FILE or --batch FILE", "usage")
    at = parse_time(at_text)
    scene_policy = None
    if scene is not None and scene_path is not None:
        fail("give --scene NAME or --scene-file FILE, not both", "usage")
    if scene is not None:
        if scene not in SCENES:
            fail(f"unknown scene {scene!r}; known: {', '.join(SCENES)}", "usage")
        scene_policy = SCENES[scene]
    elif scene_path is not None:
        scene_policy = _scene_from_file(scene_path)
    settings = load_settings()
    try:
        if anchor_path is not None:
            anchor = load_anchor(anchor_path)
        elif settings.keys_dir.exists():
            # This machine holds the service's keys: its anchor is the pinned one (nothing is created).
            anchor = load_anchor(load_services(initialise=False).keyring.anchor_public_pem())
        elif trust_path is not None:
            fail("--trust needs --anchor FILE: the pinned trust-anchor public key the list must be signed by",
                  "usage")
        else:
            fail("no trust anchor: give --trust FILE --anchor FILE, or run 'citycode init'")
        if trust_path is not None:
            # The file must be valid now, as when a gate loads it; --at then moves the gate's clock.
            trust_list = TrustList.load_file(trust_path, anchor)
        else:
            trust_list = TrustList.load(load_services().trust_list_token(now=at), anchor, at=at)
    except (TrustListError, OSError) as exc:
        fail(str(exc), "trust_list_error")
    status_cache = StatusCache()
    for status_path in status_paths:
        # Like the trust list, a status file must be valid now, when the gate loads it.
        try:
            status_cache.load(status_path.read_bytes(), trust_list)
        except (StatusListError, OSError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            fail(f"status list {status_path}: {detail}", "status_list_error")
    if not status_paths and trust_path is None:
        from contextlib import suppress

        for token in load_services().status_tokens(now=at):
            with suppress(StatusListError):  # --at before a department's key existed: its codes say status_unknown
                status_cache.load(token, trust_list, at=at)
    verifier = Verifier(trust_list, leeway=settings.leeway if leeway is None else leeway, status=status_cache)

    results = []
    if image_path is not None:
        if not image_path.is_file():
            fail(f"no such image file: {image_path}")
        results.append(verifier.verify_image(image_path, scene_policy, at=at, decoder=decoder))
    elif batch_path is not None:
        try:
            stream = sys.stdin if batch_path == "-" else open(batch_path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            fail(f"cannot read {batch_path}: {exc.strerror}")
        with stream:
            all_accepted = verify_batch(verifier, stream, scene_policy, at)
        sys.exit(0 if all_accepted else EXIT_REFUSED)
    else:
        results.append(verifier.verify(text, scene_policy, at=at))
    for result in results:
        echo_json(result.to_dict())
    sys.exit(0 if all(r.accepted for r in results) else EXIT_REFUSED)


COMMANDS = (verify,)
