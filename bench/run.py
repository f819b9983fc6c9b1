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
   the time to load and verify one in the SDK, and the time to look up one status;
g. ride codes: verification (credential signature, device signature, status lookup, replay guard) against
   two raw ECDSA P-256 verifies, for a phone whose credential was seen (warm), for a phone whose device key was
   seen with a new credential each code, and for a new phone each code (cold); and the QR version and length of
   a ride code;
h. ``citycode verify --batch FILE`` of 10,000 identity codes, per code with the process start taken off, against
   one raw ECDSA P-256 verify;
i. SM2 with SM3 (key ``sm2``): one raw SM2 sign and verify beside one raw P-256 sign and verify, the SDK's
   verification of an SM2 identity code beside an ES256 one, and the QR version of each code kind signed with
   SM2 (identity code, the two certificate show codes, the ride code with an SM2 credential) beside ES256.

Timings use ``time.perf_counter``; each figure is the median over rounds, and the measurements
compared with each other are interleaved round by round (alternating order) so that machine
noise affects them alike. The garbage collector is paused inside a timed batch, as ``timeit``
does. Nothing here asserts a timing: the numbers are reported, never judged.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.frames import camera_frame, clean_image, distorted_frames
from codeservice.cli.verify import verify_batch
from codeservice.demo import DEMO_COMPANY, DEPARTMENTS
from codeservice.identity.residents import DEMO_RESIDENTS
from issuers import render
from issuers.certificates import issue_show_code
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring, Signer
from issuers.rides import issue_credential, make_ride_code
from issuers.statuslist import BITS as STATUS_BITS
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import PREFIX, MemoryReplayGuard, Reason, TrustList, Verifier, base45, load_anchor, sm2, subject_to_text
from sdk.certid import CertificateId
from sdk.claims import CLAIM_RIDE, RIDE_DEVICE_KEY
from sdk.cose import loads_exact, parse
from sdk.image import available_decoders, decode_image
from sdk.keys import b64u_decode
from sdk.ride import device_key, parse_ride_code
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
TRANSIT = IssuerInfo("city-transit", "City Transit Account Platform", ("ridecred",))
RIDE_SCENE = SCENES["metro-gate"]  # single-use: every verified ride code must be a fresh one
#: The service's defaults (codeservice/config.py): status list size, credential lifetime, code validity, fare limit.
RIDE_STATUS_SIZE = 131_072
RIDE_CREDENTIAL_LIFETIME = 24 * 3600
RIDE_CODE_VALIDITY = 60
RIDE_FARE_LIMIT = 2000
LIBRARIES = ("cryptography", "cbor2", "zxing-cpp", "pyzbar", "pillow", "qrcode", "numpy", "pyjwt", "citycode-sdk",
             "tongsuopy")


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
    ride_calls: int
    ride_cold_calls: int
    cli_codes: int
    cli_rounds: int


FULL = Plan(
    verify_rounds=15, verify_calls=2000, image_rounds=15, clean_calls=50, frame_calls=5, distorted_frames=50,
    issue_rounds=15, issue_calls=1000, render_calls=20,
    status_sizes=(1_000_000, 10_000_000), status_load_rounds=15, lookup_calls=100_000,
    ride_calls=1000, ride_cold_calls=400, cli_codes=10_000, cli_rounds=5,
)
#: --quick keeps the list sizes (building and loading them takes about 2 s) and repeats less.
QUICK = Plan(
    verify_rounds=9, verify_calls=800, image_rounds=5, clean_calls=10, frame_calls=2, distorted_frames=20,
    issue_rounds=5, issue_calls=200, render_calls=4,
    status_sizes=(1_000_000, 10_000_000), status_load_rounds=5, lookup_calls=20_000,
    ride_calls=400, ride_cold_calls=150, cli_codes=10_000, cli_rounds=3,
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


def make_setup(home: Path, alg: str = "ES256") -> Setup:
    keyring = Keyring(home / "keys", signing_alg=alg)
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
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)  # the bench's identity office signs with ES256
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


def make_cert_setup(home: Path, alg: str = "ES256") -> CertSetup:
    keyring = Keyring(home / "cert-keys", signing_alg=alg)
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


# -- g. ride codes ----------------------------------------------------------------------------------
@dataclass
class RideSetup:
    keyring: Keyring
    trust: TrustList
    status: StatusCache
    statuses: dict[int, int]
    #: The moment every ride code is made and verified at (codes live 60 s; the run takes longer).
    now: int


def make_ride_setup(home: Path, alg: str = "ES256") -> RideSetup:
    now = int(time.time())
    keyring = Keyring(home / "ride-keys", signing_alg=alg)
    keyring.initialise([TRANSIT], now=now - 86400)  # older than the credentials it certifies
    trust = TrustList.load(sign_trust_list(keyring, validity=7 * 24 * 3600, now=now),
                           load_anchor(keyring.anchor_public_pem()))
    statuses = revoked_at_random(RIDE_STATUS_SIZE)
    token = sign_status_list(keyring.signer(TRANSIT.id), statuses, size=RIDE_STATUS_SIZE,
                             uri=f"https://city.example/status/{TRANSIT.id}", ttl=STATUS_TTL, validity=86400, now=now)
    status = StatusCache()
    status.load(token, trust, at=now)
    return RideSetup(keyring=keyring, trust=trust, status=status, statuses=statuses, now=now)


@dataclass
class Phone:
    """A phone as the service certifies it: a P-256 device key and its ride credential."""

    key: ec.EllipticCurvePrivateKey
    credential: bytes

    def code(self, now: int) -> str:
        return make_ride_code(self.key, self.credential, now=now)


def new_phone(r: RideSetup, signer: Signer, *, index: int, card: str = "adult", fare_limit: int = RIDE_FARE_LIMIT,
              validity: int = RIDE_CODE_VALIDITY, lifetime: int = RIDE_CREDENTIAL_LIFETIME,
              key: ec.EllipticCurvePrivateKey | None = None) -> Phone:
    """A new phone, or with *key* the same phone certified anew (a new credential for its device key)."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    credential = issue_credential(
        signer, account=os.urandom(10), device_key=key.public_key(), card_type=card, fare_limit=fare_limit,
        status_index=index, validity=validity, lifetime=lifetime, credential_id=os.urandom(8), now=r.now - 600,
    )
    return Phone(key, credential)


@dataclass(frozen=True)
class RawRide:
    """A ride code taken apart for the raw baseline: both DER signatures and Sig_structures, the credential's
    key id, and the device key's compressed point and ready public key object."""

    kid: bytes
    credential_der: bytes
    credential_data: bytes
    point: bytes
    device_public: ec.EllipticCurvePublicKey
    code_der: bytes
    code_data: bytes


def _der(signature: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))


def raw_ride(code: str) -> RawRide:
    outer = parse(base45.b45decode(code[len(PREFIX):]))
    inner = parse(parse_ride_code(outer.payload).credential)
    point = bytes(loads_exact(inner.payload)[CLAIM_RIDE][RIDE_DEVICE_KEY])
    return RawRide(
        kid=inner.kid, credential_der=_der(inner.signature), credential_data=inner.to_be_signed(), point=point,
        device_public=ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point),
        code_der=_der(outer.signature), code_data=outer.to_be_signed(),
    )


def _valid_indices(size: int, statuses: dict[int, int], rng: random.Random) -> Iterator[int]:
    """Random indices whose status is valid (each phone's own, as the service allocates them)."""
    while True:
        index = rng.randrange(size)
        if index not in statuses:
            yield index


def bench_ride_verify(r: RideSetup, plan: Plan) -> dict[str, Any]:
    signer = r.keyring.signer(TRANSIT.id)
    indices = _valid_indices(RIDE_STATUS_SIZE, r.statuses, random.Random(STATUS_SEED))
    guard = MemoryReplayGuard(clock=lambda: r.now)
    verifier = Verifier(r.trust, leeway=30, status=r.status, replay_guard=guard, clock=lambda: r.now + 5)
    phone = new_phone(r, signer, index=next(indices))
    first = phone.code(r.now)
    result = verifier.verify(first, RIDE_SCENE)
    if not result.accepted:
        raise SystemExit(f"bench set-up: a fresh ride code was refused ({result.reason}: {result.detail})")
    if verifier.verify(first, RIDE_SCENE).reason is not Reason.REPLAYED:
        raise SystemExit("bench set-up: a ride code verified twice was not refused as replayed")
    revoked = new_phone(r, signer, index=next(iter(r.statuses))).code(r.now)
    if verifier.verify(revoked, RIDE_SCENE).reason is not Reason.REVOKED:
        raise SystemExit("bench set-up: a ride code of a revoked device was not refused as revoked")

    rounds, warm_calls, cold_calls = plan.verify_rounds, plan.ride_calls, plan.ride_cold_calls
    # Every code is verified once (the scene is single-use): make them all before timing. interleaved() first
    # warms each function with a tenth of a batch, then runs `rounds` batches.
    warm_count = warm_calls // 10 + rounds * warm_calls
    cold_count = cold_calls // 10 + rounds * cold_calls
    started = time.perf_counter()
    warm_codes = iter([phone.code(r.now) for _ in range(warm_count)])
    cold_codes = iter([new_phone(r, signer, index=next(indices)).code(r.now) for _ in range(cold_count)])
    key_seen_codes = iter([new_phone(r, signer, index=next(indices), key=phone.key).code(r.now)
                           for _ in range(cold_count)])
    made_s = time.perf_counter() - started
    raw = raw_ride(first)
    key = r.trust.get(raw.kid)
    assert key is not None
    issuer_public, device_public = key.public_key, raw.device_public
    assert isinstance(issuer_public, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())
    cred_der, cred_data, code_der, code_data, point = (raw.credential_der, raw.credential_data, raw.code_der,
                                                       raw.code_data, raw.point)

    def raw_two() -> None:
        issuer_public.verify(cred_der, cred_data, algorithm)
        device_public.verify(code_der, code_data, algorithm)

    raw_two()  # raises if the baseline were not two valid signatures

    before = device_key.cache_info()
    guard_before = len(guard)
    samples = interleaved(
        {
            "raw_two": raw_two,
            "warm": lambda: verifier.verify(next(warm_codes), RIDE_SCENE),
            "cold": lambda: verifier.verify(next(cold_codes), RIDE_SCENE),
            "key_seen": lambda: verifier.verify(next(key_seen_codes), RIDE_SCENE),
            "warm_no_scene": lambda: verifier.verify(first),
            "decompress": lambda: ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point),
        },
        rounds=rounds,
        calls={"raw_two": warm_calls, "warm": warm_calls, "cold": cold_calls, "key_seen": cold_calls,
               "warm_no_scene": warm_calls, "decompress": warm_calls},
    )
    after = device_key.cache_info()
    spent = len(guard) - guard_before
    made = warm_count + 2 * cold_count
    if spent != made or any(next(left, None) is not None for left in (warm_codes, cold_codes, key_seen_codes)):
        raise SystemExit(f"bench: {made - spent} ride codes were refused while timed")
    return {
        "what": "Verifier.verify(ride code, scene metro-gate): parse, credential (trust list key, signature, claims; "
                "once per credential), device key (compressed point, lru_cache), device signature, times, scene, "
                "status lookup in a "
                f"{RIDE_STATUS_SIZE:,}-entry list, replay guard (memory); vs two raw ECDSA P-256 verifies of the "
                "same two Sig_structures with ready key objects",
        "scene": RIDE_SCENE.name,
        "status_list_entries": RIDE_STATUS_SIZE,
        "rounds": rounds,
        "calls_per_round": {"warm": warm_calls, "cold": cold_calls, "key_seen": cold_calls},
        "codes_made": made,
        "codes_made_s": round(made_s, 1),
        "raw_two_verifies_us": summary(samples["raw_two"], 1e-6),
        "ride_verify_warm_us": summary(samples["warm"], 1e-6),
        "ride_verify_cold_us": summary(samples["cold"], 1e-6),
        "ride_verify_key_seen_us": summary(samples["key_seen"], 1e-6),
        "ride_verify_warm_no_scene_us": summary(samples["warm_no_scene"], 1e-6),
        "decompress_point_us": summary(samples["decompress"], 1e-6),
        "ratio_warm": ratio(samples["warm"], samples["raw_two"]),
        "ratio_cold": ratio(samples["cold"], samples["raw_two"]),
        "ratio_key_seen": ratio(samples["key_seen"], samples["raw_two"]),
        "ratio_warm_no_scene": ratio(samples["warm_no_scene"], samples["raw_two"]),
        "cold_over_warm": ratio(samples["cold"], samples["warm"]),
        "device_key_cache": {"hits": after.hits - before.hits, "misses": after.misses - before.misses},
        "credentials_held": len(verifier._credentials),
        "signed_bytes": {"credential": len(cred_data), "code": len(code_data)},
    }


def bench_ride_qr(r: RideSetup) -> dict[str, Any]:
    signer = r.keyring.signer(TRANSIT.id)
    variants = {
        # as the service makes it by default: adult card, 20 yuan limit, index drawn from 131,072 (5-byte CBOR
        # above 65,535), code validity 60 s, credential 24 h
        "service_default": new_phone(r, signer, index=SHOW_STATUS_INDEX),
        # every value at the largest size the service allows (fare limit 1,000,000 cents, index from a
        # 100,000,000-entry list, validity 300 s, credential 30 days): the largest ride code
        "largest": new_phone(r, signer, index=99_999_999, card="disabled", fare_limit=1_000_000, validity=300,
                             lifetime=30 * 86400),
    }
    out: dict[str, Any] = {
        "what": "issuers.rides.make_ride_code (8-byte nonce) around issue_credential (8-byte credential id); "
                "QR version from issuers.render.qr_version (alphanumeric, level M)",
        "target_max_version": 13,
    }
    for name, phone in variants.items():
        text = phone.code(r.now)
        version = render.qr_version(text)
        out[name] = {
            "length_chars": len(text),
            "cose_bytes": len(base45.b45decode(text[len(PREFIX):])),
            "credential_bytes": len(phone.credential),
            "alphanumeric": all(c in base45.ALPHABET for c in text),
            "qr_version_at_M": version,
            "qr_modules": 17 + 4 * version,
            "within_target": version <= 13,
        }
    return out


# -- i. SM2 with SM3 ---------------------------------------------------------------------------------------------
def bench_sm2(home: Path, plan: Plan, es: Setup, es_certs: CertSetup, es_rides: RideSetup) -> dict[str, Any]:
    """SM2 beside P-256 in the same run: raw sign and verify, the SDK's verify of an identity code, QR versions."""
    if not sm2.available():
        return {"available": False, "why": sm2.INSTALL_HINT}
    sm = make_setup(home / "sm2", "SM2")
    key = sm.signer.private_key
    assert isinstance(key, sm2.Sm2PrivateKey)
    p256 = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    data = parse(base45.b45decode(sm.code[len(PREFIX):])).to_be_signed()
    sm2_signature, p256_signature = key.sign(data), p256.sign(data, algorithm)
    sm2_public, p256_public = key.public_key(), p256.public_key()
    raw = interleaved(
        {
            "p256_sign": lambda: p256.sign(data, algorithm),
            "sm2_sign": lambda: key.sign(data),
            "p256_verify": lambda: p256_public.verify(p256_signature, data, algorithm),
            "sm2_verify": lambda: sm2_public.verify(sm2_signature, data),
        },
        rounds=plan.verify_rounds, calls=max(50, plan.verify_calls // 10),
    )
    sdk = interleaved({"es256": lambda: es.verifier.verify(es.code), "sm2": lambda: sm.verifier.verify(sm.code)},
                      rounds=plan.verify_rounds, calls=max(50, plan.verify_calls // 10))
    sm_certs = make_cert_setup(home / "sm2", "SM2")
    sm_rides = make_ride_setup(home / "sm2", "SM2")
    holder = subject_to_text(os.urandom(10))

    def sizes(s: Setup, certs: CertSetup, rides: RideSetup) -> dict[str, Any]:
        texts = {
            "identity_code": issue_code(s.signer, "id", subject=s.subject, lifetime=CODE_LIFETIME),
            "elderly_card": _show_code(certs, CIVIL, "LNYD", holder, ELDERLY_CARD_FIELDS,
                                       status_index=SHOW_STATUS_INDEX, lifetime=SHOW_LIFETIME),
            "business_licence": _show_code(certs, MARKET, "YYZZ", DEMO_COMPANY, BUSINESS_LICENCE_FIELDS,
                                           status_index=SHOW_STATUS_INDEX, lifetime=SHOW_LIFETIME),
            "ride_code": new_phone(rides, rides.keyring.signer(TRANSIT.id), index=SHOW_STATUS_INDEX).code(rides.now),
        }
        return {name: {"length_chars": len(text), "qr_version_at_M": render.qr_version(text)}
                for name, text in texts.items()}

    return {
        "available": True,
        "what": "SM2 with SM3 on sm2p256v1, user id 1234567812345678 (sdk/sm2.py over tongsuopy), COSE alg -70001; "
                "raw figures over an identity code's Sig_structure; the SDK's verify without a scene",
        "raw_us": {name: summary(v, 1e-6) for name, v in raw.items()},
        "sign_sm2_vs_p256": ratio(raw["sm2_sign"], raw["p256_sign"]),
        "verify_sm2_vs_p256": ratio(raw["sm2_verify"], raw["p256_verify"]),
        "sdk_verify_us": {name: summary(v, 1e-6) for name, v in sdk.items()},
        "sdk_verify_sm2_vs_es256": ratio(sdk["sm2"], sdk["es256"]),
        "qr": {"sm2": sizes(sm, sm_certs, sm_rides), "es256": sizes(es, es_certs, es_rides),
               "note": "the ride code's device signature stays ES256 (the phone's P-256 key); its credential is "
                       "signed with SM2"},
    }


# -- h. citycode verify --batch ---------------------------------------------------------------------------------
def bench_cli_batch(s: Setup, home: Path, plan: Plan) -> dict[str, Any]:
    """``citycode verify --batch FILE`` of ``cli_codes`` identity codes, per code with the process start taken
    off, against one raw verify measured in the same round; and the same loop in process."""
    base = home / "cli"
    gate_home = base / "gate-home"  # stays empty: the command takes the trust list and anchor files
    base.mkdir()
    trust_file, anchor_file = base / "trust.jwt", base / "anchor.pem"
    trust_file.write_text(sign_trust_list(s.keyring, validity=7 * 24 * 3600), "ascii")
    anchor_file.write_bytes(s.keyring.anchor_public_pem())
    count = plan.cli_codes
    codes = [issue_code(s.signer, "id", subject=os.urandom(10), lifetime=CODE_LIFETIME) for _ in range(count)]
    files = {"batch": base / "codes.txt", "one": base / "one.txt"}
    files["batch"].write_text("".join(code + "\n" for code in codes), "ascii")
    files["one"].write_text(codes[0] + "\n", "ascii")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")} | {"CITYCODE_HOME": str(gate_home)}
    command = [sys.executable, "-m", "codeservice.cli", "verify", "--trust", str(trust_file), "--anchor",
               str(anchor_file), "--batch"]
    out_file = base / "out.jsonl"

    def run_command(name: str) -> float:
        with out_file.open("wb") as sink:
            start = time.perf_counter()
            done = subprocess.run([*command, str(files[name])], env=env, stdout=sink, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
        lines = out_file.read_bytes().splitlines()
        expected = count if name == "batch" else 1
        if done.returncode != 0 or len(lines) != expected or json.loads(lines[-1])["reason"] != "ok":
            raise SystemExit(f"bench: citycode verify --batch did not accept its {expected} codes "
                             f"(exit {done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
        return elapsed

    message = parse(base45.b45decode(s.code[len(PREFIX):]))
    data = message.to_be_signed()
    der = _der(message.signature)
    key = s.verifier.trust.get(message.kid)
    assert key is not None and isinstance(key.public_key, ec.EllipticCurvePublicKey)
    public_key, algorithm = key.public_key, ec.ECDSA(hashes.SHA256())
    public_key.verify(der, data, algorithm)
    verifier = Verifier(TrustList.load_file(trust_file, load_anchor(anchor_file)), leeway=30)

    def in_process() -> None:  # the file opened as the command opens it
        with (files["batch"].open(encoding="utf-8", errors="replace") as lines,
              out_file.open("w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink)):
            verify_batch(verifier, lines, None, None)

    def sdk_only() -> None:
        for code in codes:
            verifier.verify(code)

    steps: dict[str, Callable[[], float]] = {
        "batch": lambda: run_command("batch"),
        "one": lambda: run_command("one"),
        "raw": lambda: _batch(lambda: public_key.verify(der, data, algorithm), plan.verify_calls),
        "in_process": lambda: _batch(in_process, 1) / count,
        "sdk": lambda: _batch(sdk_only, 1) / count,
    }
    for name in ("one", "raw"):  # warm up: the interpreter's files in the page cache, first-call allocations
        steps[name]()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(plan.cli_rounds):
        for name in steps if r % 2 == 0 else reversed(list(steps)):
            samples[name].append(steps[name]())
    per_code = [(big - one) / (count - 1) for big, one in zip(samples["batch"], samples["one"], strict=True)]
    return {
        "what": "citycode verify --trust FILE --anchor FILE --batch FILE (python -m codeservice.cli, output to a "
                f"file): {count:,} identity codes, and 1 code; per code = the difference / {count - 1:,}, against "
                "one raw ECDSA P-256 verify per round. in_process: codeservice.cli.verify.verify_batch on the same "
                "lines, standard output to a file; sdk: Verifier.verify alone on the same codes",
        "codes": count,
        "rounds": plan.cli_rounds,
        "command_s": summary(samples["batch"], 1.0),
        "process_start_s": summary(samples["one"], 1.0),
        "per_code_us": summary(per_code, 1e-6),
        "raw_verify_us": summary(samples["raw"], 1e-6),
        "in_process_per_code_us": summary(samples["in_process"], 1e-6),
        "sdk_verify_us": summary(samples["sdk"], 1e-6),
        "ratio": ratio(per_code, samples["raw"]),
        "ratio_in_process": ratio(samples["in_process"], samples["raw"]),
        "ratio_sdk": ratio(samples["sdk"], samples["raw"]),
        "ratio_target": 1.5,
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
        certs = make_cert_setup(Path(home))
        doc["status_list"] = bench_status_lists(certs, plan)
        doc["certificate"] = {"verify": bench_cert_verify(certs, plan), "qr": bench_cert_qr(certs)}
        rides = make_ride_setup(Path(home))
        doc["ride"] = {"verify": bench_ride_verify(rides, plan), "qr": bench_ride_qr(rides)}
        doc["cli_batch"] = bench_cli_batch(s, Path(home), plan)
        doc["sm2"] = bench_sm2(Path(home), plan, s, certs, rides)
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under ~30 s); noisier figures")
    parser.add_argument("--out", type=Path, help="also write the JSON document here (e.g. bench/results/run.json)")
    args = parser.parse_args(argv)
    emit(run(args.quick), args.out)
    return 0


def emit(doc: dict[str, Any], out: Path | None) -> None:
    """Print the JSON document, and write it to *out* too when given."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
