"""Where the SDK's verify spends its time above the raw P-256 verify: ``python -m bench.profile [--quick]``.

For an identity code, a certificate show code with its status lookup (scene ``inspection``) and a ride code whose
credential the verifier has seen (scene ``metro-gate``), each step of ``Verifier.verify`` is timed alone, on the
very values the verifier handles, interleaved with the raw verify and the whole ``Verifier.verify`` in the same
rounds (``bench.run.interleaved``). ``rest`` is what the whole call costs above the raw verify and the steps: the
verifier's own control flow (the order of checks, the fields of the result), and the signature check running
slower after the Python work than in a loop of its own (the caches are not the raw loop's). Prints one JSON
document; asserts no timing. See bench/README.md, "Where the time goes".
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench.run import (
    CERT_SCENE,
    CIVIL,
    CODE_LIFETIME,
    ELDERLY_CARD_FIELDS,
    RIDE_SCENE,
    RIDE_STATUS_SIZE,
    STATUS_SEED,
    STATUS_TTL,
    TRANSIT,
    _der,
    _show_code,
    _valid_indices,
    interleaved,
    machine,
    make_cert_setup,
    make_ride_setup,
    make_setup,
    new_phone,
    ratio,
    revoked_at_random,
)
from issuers.statuslist import sign_status_list
from sdk import PREFIX, MemoryReplayGuard, Reason, TrustList, Verifier, base45, subject_to_text
from sdk import verifier as sdk_verifier
from sdk.claims import parse_certificate, parse_claims
from sdk.cose import _canonical_tree, loads_exact, parse
from sdk.keys import TrustedKey, verify_es256
from sdk.result import Result
from sdk.ride import parse_ride_code
from sdk.scene import Scene
from sdk.statuslist import StatusCache

ALGORITHM = ec.ECDSA(hashes.SHA256())


def _report(samples: dict[str, list[float]], steps: Sequence[str], parts: Mapping[str, Sequence[str]],
            raw: str, total: str, over_raw: Sequence[str] = ()) -> dict[str, Any]:
    """Medians in µs and as a share of the raw verify; *over_raw* steps include a raw verify, taken off."""
    raw_us = statistics.median(samples[raw]) * 1e6
    med = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    for name in over_raw:
        med[name] -= raw_us
    out_steps = {}
    for name in steps:
        entry: dict[str, Any] = {"us": round(med[name], 2), "of_raw": round(med[name] / raw_us, 3)}
        if name in parts:
            entry["parts"] = {part: {"us": round(med[part], 2), "of_raw": round(med[part] / raw_us, 3)}
                              for part in parts[name]}
        out_steps[name] = entry
    rest = med[total] - raw_us - sum(med[name] for name in steps)
    python_only = med["python_only"]
    in_flow = med[total] - python_only - raw_us
    return {
        "raw_verify_us": round(raw_us, 2),
        "sdk_verify_us": round(med[total], 2),
        "ratio": ratio(samples[total], samples[raw]),
        "above_raw_us": round(med[total] - raw_us, 2),
        "python_only_us": round(python_only, 2),
        "signature_in_the_flow_over_raw_us": round(in_flow, 2),
        "steps": out_steps,
        "rest": {"us": round(rest, 2), "of_raw": round(rest / raw_us, 3)},
    }


def _raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> Callable[[], object]:
    der = _der(signature)
    public_key.verify(der, data, ALGORITHM)
    return lambda: public_key.verify(der, data, ALGORITHM)


class _Unchecked(TrustedKey):
    """A trust-list key whose signature check always passes: the profile's Python-only verify."""

    __slots__ = ()

    def verify(self, signature: bytes, data: bytes) -> bool:
        return True


def _unchecked(verifier: Verifier) -> Verifier:
    """The same verifier (trust list, status, leeway, clock) with every trust-list signature check stubbed out."""
    trust = verifier.trust
    keys = [_Unchecked(**{name: getattr(key, name) for name in TrustedKey.__slots__}) for key in trust.keys.values()]
    return Verifier(TrustList.from_keys(keys, issued_at=trust.issued_at, expires_at=trust.expires_at, seq=trust.seq,
                                        anchor=trust.anchor), leeway=verifier.leeway, status=verifier.status,
                    replay_guard=verifier.replay_guard, clock=verifier.clock)


def profile_signed(verifier: Verifier, code: str, scene: Scene | None, rounds: int, calls: int) -> dict[str, Any]:
    """An identity code or a certificate show code: every step of ``Verifier._verify`` alone."""
    now = time.time()
    body = code[len(PREFIX):]
    raw_bytes = base45.b45decode(body)
    message = parse(raw_bytes)
    key = verifier.trust.get(message.kid)
    assert key is not None and isinstance(key.public_key, ec.EllipticCurvePublicKey)
    claims = parse_claims(message.payload)
    item = cbor2.loads(message.payload)
    fields = verifier._fields(claims, message.kid.hex(), key.issuer, scene)
    fns: dict[str, Callable[[], object]] = {
        "raw": _raw(key.public_key, message.signature, message.to_be_signed()),
        "sdk": lambda: verifier.verify(code, scene),
        "python_only": functools.partial(_unchecked(verifier).verify, code, scene),
        "base45": lambda: base45.b45decode(body),
        "cose_parse": lambda: parse(raw_bytes),
        "signature_check": lambda: verifier._signer(message, now),
        "claims": lambda: parse_claims(message.payload),
        "loads_exact": lambda: loads_exact(message.payload),
        "cbor2_loads": lambda: cbor2.loads(message.payload),
        "cbor2_dumps_plain": lambda: cbor2.dumps(item),
        "canonical_key_order": lambda: _canonical_tree(item),
        "cbor2_dumps_canonical_(not_run)": lambda: cbor2.dumps(item, canonical=True),
        "fields_and_result": lambda: Result(accepted=True, reason=Reason.OK,
                                            **verifier._fields(claims, message.kid.hex(), key.issuer, scene)),
    }
    steps = ["base45", "cose_parse", "signature_check", "claims", "fields_and_result"]
    parts = {"claims": ["loads_exact", "cbor2_loads", "cbor2_dumps_plain", "canonical_key_order",
                        "cbor2_dumps_canonical_(not_run)"]}
    raw_fn = fns["raw"]

    def decode() -> None:  # the code's own decoding, without the verifier
        parse_claims(parse(base45.b45decode(body)).payload)

    def decode_then_raw() -> None:
        decode()
        raw_fn()

    fns["control_decode"] = decode
    fns["control_decode_then_raw"] = decode_then_raw
    if claims.kind == "cert":
        cert = parse_certificate(claims.extra)
        cert_fields = dict(fields, cert_id=cert.cert_id, cert_type=cert.type_code, holder=cert.holder,
                           fields=cert.fields)
        fns["certificate_claim"] = lambda: parse_certificate(claims.extra)
        fns["certificate_checks_and_status"] = lambda: verifier._check_certificate(cert, key, scene, now,
                                                                                  dict(cert_fields))
        fns["status_lookup"] = lambda: verifier.status.lookup(key.issuer, cert.status_index, now,
                                                              scene.max_status_age if scene else 86400)
        steps[4:4] = ["certificate_claim", "certificate_checks_and_status"]
        parts["certificate_checks_and_status"] = ["status_lookup"]
    samples = interleaved(fns, rounds=rounds, calls=calls)
    out = _report(samples, steps, parts, "raw", "sdk", over_raw=["signature_check"])
    med = {name: statistics.median(samples[name]) * 1e6
           for name in ("raw", "control_decode", "control_decode_then_raw")}
    out["control"] = {
        "what": "the raw verify right after the code's decoding (base45, COSE, claims; no verifier), over the two "
                "timed apart: what the same P-256 verify costs more once Python work ran before it",
        "decode_us": round(med["control_decode"], 2),
        "decode_then_raw_us": round(med["control_decode_then_raw"], 2),
        "raw_slower_after_python_us": round(med["control_decode_then_raw"] - med["control_decode"] - med["raw"], 2),
    }
    return out


def profile_ride(rounds: int, calls: int, home: Path) -> dict[str, Any]:
    """A ride code whose credential the verifier checked before: what each code still pays."""
    r = make_ride_setup(home)
    signer = r.keyring.signer(TRANSIT.id)
    phone = new_phone(r, signer, index=next(_valid_indices(RIDE_STATUS_SIZE, r.statuses, random.Random(STATUS_SEED))))
    guard = MemoryReplayGuard(clock=lambda: r.now)
    verifier = Verifier(r.trust, leeway=30, status=r.status, replay_guard=guard, clock=lambda: r.now + 5)
    first = phone.code(r.now)
    assert verifier.verify(first, RIDE_SCENE).accepted
    codes = iter([phone.code(r.now) for _ in range(calls // 10 + rounds * calls)])
    more_codes = iter([phone.code(r.now) for _ in range(calls // 10 + rounds * calls)])
    unchecked = Verifier(r.trust, leeway=30, status=r.status, replay_guard=MemoryReplayGuard(clock=lambda: r.now),
                         clock=lambda: r.now + 5)
    assert unchecked.verify(first, RIDE_SCENE).accepted  # its credential checked (the first code pays that)
    body = first[len(PREFIX):]
    raw_bytes = base45.b45decode(body)
    message = parse(raw_bytes)
    code = parse_ride_code(message.payload)
    seen = verifier._credentials[code.credential]
    device = seen.credential.device_key
    tbs = message.to_be_signed()
    ids = (n.to_bytes(16, "big") for n in itertools.count())
    fields: dict[str, Any] = {"kind": "ride", "subject_id": seen.credential.account, "issued_at": code.generated_at,
                              "expires_at": code.generated_at + 60, "kid": seen.inner.kid.hex(),
                              "issuer": seen.key.issuer, "code_id": (seen.credential.credential_id + code.nonce).hex(),
                              "scene": RIDE_SCENE.name, "card_type": seen.credential.card_type,
                              "fare_limit": seen.credential.fare_limit,
                              "credential_id": seen.credential.credential_id.hex(),
                              "credential_expires_at": seen.credential.expires_at, "status_age": 5}
    fns: dict[str, Callable[[], object]] = {
        "raw_device": _raw(device, message.signature, tbs),
        "sdk": lambda: verifier.verify(next(codes), RIDE_SCENE),
        "python_only": lambda: _without_device_signature(unchecked, next(more_codes)),
        "base45": lambda: base45.b45decode(body),
        "cose_parse": lambda: parse(raw_bytes),
        "ride_payload": lambda: parse_ride_code(message.payload),
        "credential_seen": lambda: verifier._credentials.get(code.credential),
        "device_signature_check": lambda: verify_es256(device, message.signature, message.to_be_signed()),
        "status_lookup": lambda: verifier.status.lookup(seen.key.issuer, seen.credential.status_index, r.now + 5,
                                                        RIDE_SCENE.max_status_age),
        "replay_guard": lambda: guard.first_use(RIDE_SCENE.replay_scope, next(ids), r.now + 100),
        "fields_and_result": lambda: Result(accepted=True, reason=Reason.OK, **fields),
    }
    steps = ["base45", "cose_parse", "ride_payload", "credential_seen", "device_signature_check", "status_lookup",
             "replay_guard", "fields_and_result"]
    samples = interleaved(fns, rounds=rounds, calls=calls)
    out = _report(samples, steps, {}, "raw_device", "sdk", over_raw=["device_signature_check"])
    two = statistics.median(samples["raw_device"]) * 2e6
    out["baseline_note"] = ("raw_verify_us is one raw verify (the device key's); the target's baseline is two, the "
                            f"credential's and the code's: {two:.1f} us")
    out["ratio_of_two_raw_verifies"] = round(out["sdk_verify_us"] / two, 3)
    return out


def _without_device_signature(verifier: Verifier, code: str) -> object:
    """``verifier.verify(code)`` with the device signature check stubbed out for this one call."""
    sdk_verifier.verify_es256 = _yes
    try:
        return verifier.verify(code, RIDE_SCENE)
    finally:
        sdk_verifier.verify_es256 = verify_es256


def _yes(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; noisier")
    args = parser.parse_args(argv)
    rounds, calls = (7, 500) if args.quick else (15, 2000)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="citycode-profile-") as tmp:
        home = Path(tmp)
        s = make_setup(home)
        c = make_cert_setup(home)
        statuses = revoked_at_random(RIDE_STATUS_SIZE)
        cache = StatusCache()
        cache.load(sign_status_list(c.keyring.signer(CIVIL.id), statuses, size=RIDE_STATUS_SIZE,
                                    uri=f"https://city.example/status/{CIVIL.id}", ttl=STATUS_TTL,
                                    validity=7 * 24 * 3600), c.trust)
        index = next(_valid_indices(RIDE_STATUS_SIZE, statuses, random.Random(STATUS_SEED)))
        cert_code = _show_code(c, CIVIL, "LNYD", subject_to_text(os.urandom(10)), ELDERLY_CARD_FIELDS,
                               status_index=index, lifetime=CODE_LIFETIME)
        cert_verifier = Verifier(c.trust, leeway=30, status=cache)
        assert cert_verifier.verify(cert_code, CERT_SCENE).accepted
        doc = {
            "benchmark": "citycode profile of Verifier.verify",
            "command": "python -m bench.profile" + (" --quick" if args.quick else ""),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "rounds": rounds,
            "calls_per_round": calls,
            "identity": profile_signed(s.verifier, s.code, None, rounds, calls),
            "certificate": profile_signed(cert_verifier, cert_code, CERT_SCENE, rounds, calls),
            "ride_credential_seen": profile_ride(rounds, calls, home),
        }
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
