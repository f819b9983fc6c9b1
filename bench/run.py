"""The citycode benchmark: ``python -m bench.run [--quick] [--out FILE]``.

Measures, in one run, and prints one JSON document (see bench/README.md for what each figure means):

a. SDK verification of an identity code against one raw ECDSA P-256 verify with the same key;
b. image to decision (QR decode + verify) for a clean PNG and a 1280x960 camera frame, for
   zxing-cpp and pyzbar, and each decoder's decode rate over moderately distorted frames;
c. issuance, alone and with PNG or SVG rendering, against one raw ECDSA P-256 signature;
d. the QR version and length of an identity code.

Timings use ``time.perf_counter``; each figure is the median over rounds, and the measurements
compared with each other are interleaved round by round (alternating order) so that machine
noise affects them alike. The garbage collector is paused inside a timed batch, as ``timeit``
does. Nothing here asserts a timing: the numbers are reported, never judged.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.frames import camera_frame, clean_image, distorted_frames
from issuers import render
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring, Signer
from issuers.trustlist import sign_trust_list
from sdk import PREFIX, TrustList, Verifier, base45, load_anchor
from sdk.cose import parse
from sdk.image import available_decoders, decode_image
from verifiers.scenes import SCENES

IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))
#: Identity codes live 60 s in the service; the benchmark's codes live an hour so none expires mid-run.
CODE_LIFETIME = 3600
SCENE = SCENES["service-window"]  # not single-use: the same code may be verified again and again
DECODERS = ("zxing", "pyzbar")
LIBRARIES = ("cryptography", "cbor2", "zxing-cpp", "pyzbar", "pillow", "qrcode", "numpy", "pyjwt", "citycode-sdk")


@dataclass(frozen=True)
class Plan:
    """How much to repeat each measurement."""

    verify_rounds: int
    verify_calls: int
    image_rounds: int
    clean_calls: int
    frame_calls: int
    distorted_frames: int
    issue_rounds: int
    issue_calls: int
    render_calls: int


FULL = Plan(
    verify_rounds=15, verify_calls=2000, image_rounds=15, clean_calls=50, frame_calls=5, distorted_frames=50,
    issue_rounds=15, issue_calls=1000, render_calls=20,
)
QUICK = Plan(
    verify_rounds=9, verify_calls=800, image_rounds=5, clean_calls=10, frame_calls=2, distorted_frames=20,
    issue_rounds=5, issue_calls=200, render_calls=4,
)


# -- timing helpers ---------------------------------------------------------------------------
def _batch(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of *fn*, over one batch of *calls* calls (garbage collector paused)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / calls


def interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int, calls: int | dict[str, int]
) -> dict[str, list[float]]:
    """Per-call seconds of each function, one batch per function per round; the order alternates by round."""
    names = list(fns)
    per_call = {name: calls if isinstance(calls, int) else calls[name] for name in names}
    for name in names:  # warm up: caches, lazy imports, first-call allocations
        _batch(fns[name], max(1, per_call[name] // 10))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            samples[name].append(_batch(fns[name], per_call[name]))
    return samples


def summary(samples: Sequence[float], unit: float) -> dict[str, float]:
    """Median, min and max of *samples* (seconds) in the given unit (1e-6 for µs, 1e-3 for ms)."""
    return {
        "median": round(statistics.median(samples) / unit, 3),
        "min": round(min(samples) / unit, 3),
        "max": round(max(samples) / unit, 3),
    }


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    """The ratio of medians, and the median of the per-round ratios (robust to a drifting machine)."""
    return {
        "of_medians": round(statistics.median(numerator) / statistics.median(denominator), 3),
        "median_per_round": round(statistics.median(n / d for n, d in zip(numerator, denominator, strict=True)), 3),
    }


# -- set-up -----------------------------------------------------------------------------------
@dataclass
class Setup:
    keyring: Keyring
    signer: Signer
    verifier: Verifier
    code: str
    subject: bytes


def make_setup(home: Path) -> Setup:
    keyring = Keyring(home / "keys")
    keyring.initialise([IDENTITY])
    token = sign_trust_list(keyring, validity=7 * 24 * 3600)
    trust = TrustList.load(token, load_anchor(keyring.anchor_public_pem()))
    signer = keyring.signer(IDENTITY.id)
    subject = os.urandom(10)
    code = issue_code(signer, "id", subject=subject, lifetime=CODE_LIFETIME)
    verifier = Verifier(trust, leeway=30)
    for scene in (None, SCENE):
        result = verifier.verify(code, scene)
        if not result.accepted:
            raise SystemExit(f"bench set-up: a fresh identity code was refused ({result.reason})")
    return Setup(keyring=keyring, signer=signer, verifier=verifier, code=code, subject=subject)


# -- a. verification --------------------------------------------------------------------------
def bench_verify(s: Setup, plan: Plan) -> dict[str, Any]:
    message = parse(base45.b45decode(s.code[len(PREFIX):]))
    data = message.to_be_signed()
    r, s_ = (int.from_bytes(half, "big") for half in (message.signature[:32], message.signature[32:]))
    der = encode_dss_signature(r, s_)
    key = s.verifier.trust.get(message.kid)
    assert key is not None
    public_key = key.public_key
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())
    public_key.verify(der, data, algorithm)  # raises if the baseline were not a valid signature
    verifier, code = s.verifier, s.code

    samples = interleaved(
        {
            "raw": lambda: public_key.verify(der, data, algorithm),
            "sdk": lambda: verifier.verify(code),
            "sdk_scene": lambda: verifier.verify(code, SCENE),
        },
        rounds=plan.verify_rounds,
        calls=plan.verify_calls,
    )
    return {
        "what": "Verifier.verify(code text) vs one raw ECDSA P-256 verify of the code's own Sig_structure, same key",
        "rounds": plan.verify_rounds,
        "calls_per_round": plan.verify_calls,
        "raw_verify_us": summary(samples["raw"], 1e-6),
        "sdk_verify_us": summary(samples["sdk"], 1e-6),
        "sdk_verify_scene_us": summary(samples["sdk_scene"], 1e-6),
        "scene": SCENE.name,
        "ratio": ratio(samples["sdk"], samples["raw"]),
        "ratio_scene": ratio(samples["sdk_scene"], samples["raw"]),
        "ratio_target": 1.3,
        "signed_bytes": len(data),
    }


# -- b. images --------------------------------------------------------------------------------
def bench_images(s: Setup, plan: Plan) -> dict[str, Any]:
    decoders = [d for d in DECODERS if d in available_decoders()]
    missing = [d for d in DECODERS if d not in decoders]
    verifier, code = s.verifier, s.code
    inputs = {
        "clean_png": clean_image(code),
        "camera_frame": camera_frame(code),  # defaults: 5 px a module, 12°, blur 1.0, noise 8, no JPEG
    }
    out: dict[str, Any] = {
        "what": "decode = sdk.image.decode_image(PIL image); decision = Verifier.verify_image(PIL image, scene)",
        "scene": SCENE.name,
        "decoders": decoders,
        "missing_decoders": missing,
        "inputs": {name: {"size": list(img.size), "mode": img.mode} for name, img in inputs.items()},
    }
    for name, img in inputs.items():
        fns: dict[str, Callable[[], object]] = {}
        accepted: dict[str, Any] = {}
        for dec in decoders:
            fns[f"decode_{dec}"] = functools.partial(decode_image, img, decoder=dec)
            fns[f"decision_{dec}"] = functools.partial(verifier.verify_image, img, SCENE, decoder=dec)
            result = verifier.verify_image(img, SCENE, decoder=dec)
            accepted[dec] = {"accepted": result.accepted, "reason": str(result.reason)}
        calls = plan.clean_calls if name == "clean_png" else plan.frame_calls
        samples = interleaved(fns, rounds=plan.image_rounds, calls=calls) if fns else {}
        block: dict[str, Any] = {"calls_per_round": calls, "rounds": plan.image_rounds, "result": accepted}
        for key, values in samples.items():
            block[f"{key}_ms"] = summary(values, 1e-3)
        if "decision_zxing" in samples and "decision_pyzbar" in samples:
            block["pyzbar_over_zxing"] = ratio(samples["decision_pyzbar"], samples["decision_zxing"])
        out[name] = block

    frames = distorted_frames(code, plan.distorted_frames, seed=2024)
    rates: dict[str, Any] = {}
    for dec in decoders:
        hits = 0
        times = []
        for frame in frames:
            start = time.perf_counter()
            texts = decode_image(frame, decoder=dec)
            times.append(time.perf_counter() - start)
            hits += code in texts
        rates[dec] = {"decoded": hits, "of": len(frames), "rate": round(hits / len(frames), 3),
                      "decode_ms": summary(times, 1e-3)}
    out["distorted_frames"] = {
        "what": "rotation 0-30°, blur 0.6-1.4, noise 4-12, JPEG 60, 4.5-7 px a module (bench.frames.distorted_frames)",
        "seed": 2024,
        **rates,
    }
    out["favours"] = _favours(out, decoders)
    return out


def _favours(out: dict[str, Any], decoders: list[str]) -> dict[str, Any]:
    """Which decoder each figure favours: faster decisions, higher decode rate."""
    if len(decoders) < 2:
        return {"overall": decoders[0] if decoders else None, "note": "only one decoder installed"}
    verdict: dict[str, Any] = {}
    for name in ("clean_png", "camera_frame"):
        times = {dec: out[name][f"decision_{dec}_ms"]["median"] for dec in decoders}
        verdict[f"faster_{name}"] = min(times, key=lambda d: times[d])
    rates = {dec: out["distorted_frames"][dec]["decoded"] for dec in decoders}
    best = max(rates.values())
    leaders = [dec for dec, hits in rates.items() if hits == best]
    verdict["higher_decode_rate"] = leaders[0] if len(leaders) == 1 else "tie"
    votes = [v for v in verdict.values() if v != "tie"]
    verdict["overall"] = max(set(votes), key=votes.count) if votes else "tie"
    return verdict


# -- c. issuance ------------------------------------------------------------------------------
def bench_issue(s: Setup, plan: Plan) -> dict[str, Any]:
    signer, subject = s.signer, s.subject
    private_key = signer.private_key
    algorithm = ec.ECDSA(hashes.SHA256())
    message = parse(base45.b45decode(s.code[len(PREFIX):]))
    data = message.to_be_signed()

    def issue() -> str:
        return issue_code(signer, "id", subject=subject, lifetime=60)

    samples = interleaved(
        {
            "raw_sign": lambda: private_key.sign(data, algorithm),
            "issue": issue,
            "issue_png": lambda: render.png(issue()),
            "issue_svg": lambda: render.svg(issue()),
        },
        rounds=plan.issue_rounds,
        calls={"raw_sign": plan.issue_calls, "issue": plan.issue_calls,
               "issue_png": plan.render_calls, "issue_svg": plan.render_calls},
    )
    sample_code = issue()
    return {
        "what": "issuers.codes.issue_code alone, then followed by issuers.render.png or .svg; baseline one raw sign",
        "rounds": plan.issue_rounds,
        "raw_sign_us": summary(samples["raw_sign"], 1e-6),
        "issue_us": summary(samples["issue"], 1e-6),
        "issue_png_ms": summary(samples["issue_png"], 1e-3),
        "issue_svg_ms": summary(samples["issue_svg"], 1e-3),
        "issue_over_raw_sign": ratio(samples["issue"], samples["raw_sign"]),
        "png_bytes": len(render.png(sample_code)),
        "svg_bytes": len(render.svg(sample_code).encode()),
    }


# -- d. size ----------------------------------------------------------------------------------
def bench_size(s: Setup) -> dict[str, Any]:
    text = s.code
    return {
        "kind": "id",
        "length_chars": len(text),
        "alphanumeric": all(c in base45.ALPHABET for c in text),
        "qr_version_at_M": render.qr_version(text),
        "qr_modules": 17 + 4 * render.qr_version(text),
    }


# -- machine ----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        openssl: str | None = backend.openssl_version_text()
    except Exception:
        openssl = None
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "openssl": openssl,
        "libraries": versions,
    }


# -- main -------------------------------------------------------------------------------------
def run(quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="citycode-bench-") as home:
        s = make_setup(Path(home))
        doc: dict[str, Any] = {
            "benchmark": "citycode",
            "command": "python -m bench.run" + (" --quick" if quick else ""),
            "quick": quick,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "code": bench_size(s),
        }
        doc["verify"] = bench_verify(s, plan)
        doc["image"] = bench_images(s, plan)
        doc["issue"] = bench_issue(s, plan)
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under ~20 s); noisier figures")
    parser.add_argument("--out", type=Path, help="also write the JSON document here (e.g. bench/results/run.json)")
    args = parser.parse_args(argv)
    doc = run(args.quick)
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
