"""The citycode benchmark: ``python -m bench.run [--quick] [--out FILE]``.

Measures, in one run, and prints one JSON document (see bench/README.md for what each figure means):

a. SDK verification of an identity code against one raw ECDSA P-256 verify with the same key;
b. image to decision (QR decode + verify) for a clean PNG and a 1280x960 camera frame, for
   zxing-cpp and pyzbar, and each decoder's decode rate over moderately distorted frames;
c. issuance, alone and with PNG or SVG rendering, against one raw ECDSA P-256 signature;
d. the QR version and length of an identity code;
e. certificate show codes: verification with the status lookup (scene ``inspection``) against one raw
   ECDSA P-256 verify, and the QR version of an elderly card and of a business licence showing four fields;
f. Token Status Lists of 1,000,000 and 10,000,000 entries (2 bits, 1% revoked at random indices): sizes,
   the time to load and verify one in the SDK, and the time to look up one status.

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
import random
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.frames import camera_frame, clean_image, distorted_frames
from codeservice.demo import DEMO_COMPANY, DEPARTMENTS
from codeservice.residents import DEMO_RESIDENTS
from issuers import render
from issuers.certificates import issue_show_code
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring, Signer
from issuers.statuslist import BITS as STATUS_BITS
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import PREFIX, Reason, TrustList, Verifier, base45, load_anchor, subject_to_text
from sdk.certid import CertificateId
from sdk.cose import parse
from sdk.image import available_decoders, decode_image
from sdk.keys import b64u_decode
from sdk.statuslist import INVALID, VALID, StatusCache, pack
from verifiers.scenes import SCENES

IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))
#: Identity codes live 60 s in the service; the benchmark's codes live an hour so none expires mid-run.
CODE_LIFETIME = 3600
SCENE = SCENES["service-window"]  # not single-use: the same code may be verified again and again
DECODERS = ("zxing", "pyzbar")
#: Departments as in the demo data (codeservice/demo.py), each trusted for its own certificate types.
ORG_CODES = {dept: org for dept, _name, org in DEPARTMENTS}
CIVIL = IssuerInfo("civil-affairs", "City Civil Affairs Bureau", ("cert",), ("LNYD",), ORG_CODES["civil-affairs"])
MARKET = IssuerInfo("market-regulation", "City Market Regulation Bureau", ("cert",), ("YYZZ",),
                    ORG_CODES["market-regulation"])
CERT_SCENE = SCENES["inspection"]  # any certificate type, status list at most an hour old, re-scannable
#: The service's show-code lifetime (CITYCODE_CODE_LIFETIME); only the QR sizes use it.
SHOW_LIFETIME = 60
#: An index drawn from the service's default list (131,072 entries) needs 5 bytes in CBOR above 65,535.
SHOW_STATUS_INDEX = 100_000
REVOKED_FRACTION = 0.01
STATUS_SEED = 36904
STATUS_TTL = 300
_ELDER_NAME, _ELDER_BIRTH = DEMO_RESIDENTS[0]
#: Four disclosed fields of each demo certificate (values as in codeservice/demo.py). The licence shows
#: its four longest fields (business scope rather than registered capital): the largest such code.
ELDERLY_CARD_FIELDS: dict[str, str | int | bool] = {
    "name": _ELDER_NAME, "birth_date": _ELDER_BIRTH.isoformat(), "gender": "male", "age_over_60": True,
}
BUSINESS_LICENCE_FIELDS: dict[str, str | int | bool] = {
    "company_name": "Harbour Noodle House Co., Ltd.", "legal_representative": "Wang Fang",
    "business_scope": "Catering; retail of food", "address": "18 Zhongshan Road, Shinan District",
}
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
    status_sizes: tuple[int, ...]
    status_load_rounds: int
    lookup_calls: int


FULL = Plan(
    verify_rounds=15, verify_calls=2000, image_rounds=15, clean_calls=50, frame_calls=5, distorted_frames=50,
    issue_rounds=15, issue_calls=1000, render_calls=20,
    status_sizes=(1_000_000, 10_000_000), status_load_rounds=15, lookup_calls=100_000,
)
#: --quick keeps the list sizes (building and loading them takes about 2 s) and repeats less.
QUICK = Plan(
    verify_rounds=9, verify_calls=800, image_rounds=5, clean_calls=10, frame_calls=2, distorted_frames=20,
    issue_rounds=5, issue_calls=200, render_calls=4,
    status_sizes=(1_000_000, 10_000_000), status_load_rounds=5, lookup_calls=20_000,
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


# -- e./f. certificates and status lists ------------------------------------------------------------
@dataclass
class CertSetup:
    keyring: Keyring
    trust: TrustList
    #: After bench_status_lists: the gate's cache holding the largest list, and that list's statuses.
    cache: StatusCache | None = None
    statuses: dict[int, int] | None = None


def make_cert_setup(home: Path) -> CertSetup:
    keyring = Keyring(home / "cert-keys")
    keyring.initialise([CIVIL, MARKET])
    token = sign_trust_list(keyring, validity=7 * 24 * 3600)
    return CertSetup(keyring=keyring, trust=TrustList.load(token, load_anchor(keyring.anchor_public_pem())))


def revoked_at_random(size: int, seed: int = STATUS_SEED) -> dict[int, int]:
    """1% of *size* distinct indices, drawn at random (as the service allocates them), all revoked."""
    rng = random.Random(seed + size)
    return dict.fromkeys(rng.sample(range(size), round(size * REVOKED_FRACTION)), INVALID)


def _valid_index(size: int, statuses: dict[int, int], seed: int) -> int:
    """A random index whose status is valid."""
    rng = random.Random(seed)
    while True:
        index = rng.randrange(size)
        if index not in statuses:
            return index


def bench_status_lists(c: CertSetup, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "what": "issuers.statuslist.sign_status_list (the service's lists); load = StatusCache.load(token, trust): "
                "JWS verify with the trust list key, base64url, ZLIB inflate; lookup = StatusCache.lookup",
        "bits": STATUS_BITS,
        "revoked_fraction": REVOKED_FRACTION,
        "seed": STATUS_SEED,
        "sizes_note": "the same list sizes in --quick and in the full run; --quick repeats less",
        "load_rounds": plan.status_load_rounds,
        "lookup_calls_per_round": plan.lookup_calls,
        "lists": {str(size): _bench_one_status_list(c, plan, size) for size in plan.status_sizes},
    }
    return out


def _bench_one_status_list(c: CertSetup, plan: Plan, size: int) -> dict[str, Any]:
    """Sizes, load time and lookup time of one list; leaves the gate's cache holding it in *c*."""
    signer = c.keyring.signer(CIVIL.id)
    statuses = revoked_at_random(size)
    start = time.perf_counter()
    token = sign_status_list(signer, statuses, size=size, uri=f"https://city.example/status/{CIVIL.id}",
                             ttl=STATUS_TTL, validity=7 * 24 * 3600)
    sign_s = time.perf_counter() - start
    lst = jwt.decode(token, options={"verify_signature": False})["status_list"]["lst"]
    compressed = b64u_decode(lst)
    one_bit = zlib.compress(pack(size, statuses, 1), 9)

    cache = StatusCache()
    trust = c.trust
    loaded = cache.load(token, trust)
    if loaded.size != size or any(loaded.status(i) != INVALID for i in list(statuses)[:1000]):
        raise SystemExit("bench set-up: the status list did not read back as signed")
    revoked_index = next(iter(statuses))
    now = time.time()
    for index, expected in ((revoked_index, INVALID), (_valid_index(size, statuses, size), VALID)):
        if cache.lookup(CIVIL.id, index, now, CERT_SCENE.max_status_age).status != expected:
            raise SystemExit("bench set-up: a status lookup gave the wrong answer")
    load_samples = interleaved({"load": lambda: cache.load(token, trust)}, rounds=plan.status_load_rounds, calls=1)
    lookups = interleaved(
        {
            "lookup": functools.partial(cache.lookup, CIVIL.id, revoked_index, now, CERT_SCENE.max_status_age),
            "status": functools.partial(loaded.status, revoked_index),
        },
        rounds=plan.verify_rounds, calls=plan.lookup_calls,
    )
    c.cache, c.statuses = cache, statuses
    return {
        "entries": size,
        "revoked": len(statuses),
        "packed_bytes": len(loaded.data),
        "lst_zlib_bytes": len(compressed),
        "lst_base64url_chars": len(lst),
        "token_chars": len(token),
        "one_bit_lst_zlib_bytes": len(one_bit),
        "sign_once_ms": round(sign_s * 1e3, 1),
        "load_verify_ms": summary(load_samples["load"], 1e-3),
        "lookup_us": summary(lookups["lookup"], 1e-6),
        "status_us": summary(lookups["status"], 1e-6),
    }


def _show_code(c: CertSetup, info: IssuerInfo, type_code: str, holder: str, fields: dict[str, str | int | bool], *,
               status_index: int, lifetime: int) -> str:
    now = int(time.time())
    return issue_show_code(
        c.keyring.signer(info.id), cert_id=str(CertificateId.build(type_code, ORG_CODES[info.id], "00000001", 1)),
        type_code=type_code, holder=holder, valid_from=now - 86400, valid_until=now + 3650 * 86400,
        status_index=status_index, disclosed=fields, lifetime=lifetime,
    )


def bench_cert_verify(c: CertSetup, plan: Plan) -> dict[str, Any]:
    assert c.cache is not None and c.statuses is not None, "bench_status_lists first"
    held = c.cache.get(CIVIL.id)
    assert held is not None
    statuses = c.statuses
    index = _valid_index(held.size, statuses, STATUS_SEED)
    holder = subject_to_text(os.urandom(10))
    code = _show_code(c, CIVIL, "LNYD", holder, ELDERLY_CARD_FIELDS, status_index=index, lifetime=CODE_LIFETIME)
    revoked = _show_code(c, CIVIL, "LNYD", holder, ELDERLY_CARD_FIELDS, status_index=next(iter(statuses)),
                         lifetime=CODE_LIFETIME)
    verifier = Verifier(c.trust, leeway=30, status=c.cache)
    result = verifier.verify(code, CERT_SCENE)
    if not result.accepted or result.fields != ELDERLY_CARD_FIELDS:
        raise SystemExit(f"bench set-up: a valid certificate code was refused ({result.reason}: {result.detail})")
    if verifier.verify(revoked, CERT_SCENE).reason is not Reason.REVOKED:
        raise SystemExit("bench set-up: a revoked certificate code was not refused as revoked")

    message = parse(base45.b45decode(code[len(PREFIX):]))
    data = message.to_be_signed()
    r, s_ = (int.from_bytes(half, "big") for half in (message.signature[:32], message.signature[32:]))
    der = encode_dss_signature(r, s_)
    key = c.trust.get(message.kid)
    assert key is not None
    public_key = key.public_key
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())
    public_key.verify(der, data, algorithm)
    samples = interleaved(
        {
            "raw": lambda: public_key.verify(der, data, algorithm),
            "cert": lambda: verifier.verify(code, CERT_SCENE),
        },
        rounds=plan.verify_rounds,
        calls=plan.verify_calls,
    )
    return {
        "what": "Verifier.verify(show code, scene inspection): signature, claims, certificate type of the issuer, "
                "validity dates, status lookup in the cached list, scene rules; vs one raw ECDSA P-256 verify of "
                "the code's own Sig_structure, same key",
        "scene": CERT_SCENE.name,
        "status_list_entries": held.size,
        "disclosed_fields": sorted(ELDERLY_CARD_FIELDS),
        "rounds": plan.verify_rounds,
        "calls_per_round": plan.verify_calls,
        "raw_verify_us": summary(samples["raw"], 1e-6),
        "cert_verify_with_status_us": summary(samples["cert"], 1e-6),
        "ratio": ratio(samples["cert"], samples["raw"]),
        "signed_bytes": len(data),
    }


def bench_cert_qr(c: CertSetup) -> dict[str, Any]:
    codes = {
        "elderly_card": ("LNYD", CIVIL, subject_to_text(os.urandom(10)), ELDERLY_CARD_FIELDS),
        "business_licence": ("YYZZ", MARKET, DEMO_COMPANY, BUSINESS_LICENCE_FIELDS),
    }
    out: dict[str, Any] = {
        "what": f"issue_show_code with four disclosed fields (demo values), lifetime {SHOW_LIFETIME} s, status index "
                f"{SHOW_STATUS_INDEX}; QR version from issuers.render.qr_version (alphanumeric, level M)",
        "target_max_version": 15,
    }
    for name, (type_code, info, holder, fields) in codes.items():
        text = _show_code(c, info, type_code, holder, fields, status_index=SHOW_STATUS_INDEX, lifetime=SHOW_LIFETIME)
        version = render.qr_version(text)
        out[name] = {
            "type": type_code,
            "disclosed_fields": list(fields),
            "length_chars": len(text),
            "cose_bytes": len(base45.b45decode(text[len(PREFIX):])),
            "qr_version_at_M": version,
            "qr_modules": 17 + 4 * version,
            "within_target": version <= 15,
        }
    return out


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
        certs = make_cert_setup(Path(home))
        doc["status_list"] = bench_status_lists(certs, plan)
        doc["certificate"] = {"verify": bench_cert_verify(certs, plan), "qr": bench_cert_qr(certs)}
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under ~30 s); noisier figures")
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
