"""Choosing the SM2 library by measurement: ``python -m bench.sm2 [--rounds N]``.

For each candidate installed (``tongsuopy``, a binding of Tongsuo; ``gmssl``, pure Python), in one run beside
ECDSA P-256 of pyca/cryptography (the baseline): whether it passes the standard's vectors (SM3 of "abc" and of
"abcd" x 16, GB/T 32905 appendix A; the SM2 signature of "message digest" by the key of GB/T 32918.5-2017 /
GM/T 0003.5-2012 annex A on sm2p256v1 with the user id 1234567812345678, verified, and its tampered twin
refused), then sign and verify in microseconds (median over rounds, candidates interleaved round by round) and
each one's ratio to P-256. Prints one JSON document; ``chosen`` is the fastest verifier that passed. Nothing here
asserts a timing.
"""

from __future__ import annotations

import abc
import argparse
import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

SM3_VECTORS = (
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
)
#: GB/T 32918.5-2017 annex A (GM/T 0003.5-2012 A.2): sm2p256v1, user id 1234567812345678.
VECTOR_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
VECTOR_X = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
VECTOR_Y = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
VECTOR_MESSAGE = b"message digest"
VECTOR_SIGNATURE = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)
DATA = os.urandom(120)  # about a code's Sig_structure


class Candidate(abc.ABC):
    """One SM2 library: its SM3, its check of the standard's signature, and its sign and verify calls."""

    name = ""

    @abc.abstractmethod
    def sm3(self, data: bytes) -> str: ...

    @abc.abstractmethod
    def vector_verifies(self, signature: bytes) -> bool: ...

    @abc.abstractmethod
    def sign_verify(self) -> tuple[Callable[[], Any], Callable[[], Any]]: ...


class Tongsuo(Candidate):
    name = "tongsuopy"

    def __init__(self) -> None:
        # lazy: a candidate is imported only when measured (ImportError means "not installed")
        from sdk import sm2

        sm2.Sm2PrivateKey.generate()  # Sm2Unavailable when tongsuopy is not installed
        self.sm2 = sm2
        self.key = sm2.Sm2PrivateKey.generate()
        self.signature = self.key.sign(DATA)

    def sm3(self, data: bytes) -> str:
        from tongsuopy.crypto import hashes as th

        digest = th.Hash(th.SM3())
        digest.update(data)
        return bytes(digest.finalize()).hex()

    def vector_verifies(self, signature: bytes) -> bool:
        derived = self.sm2.Sm2PrivateKey.from_value(VECTOR_D).public_key()
        public = self.sm2.Sm2PublicKey(VECTOR_X, VECTOR_Y)
        return derived == public and public.verify(signature, VECTOR_MESSAGE)

    def sign_verify(self) -> tuple[Callable[[], Any], Callable[[], Any]]:
        public, signature = self.key.public_key(), self.signature
        return (lambda: self.key.sign(DATA)), (lambda: public.verify(signature, DATA))


class GmSSL(Candidate):
    name = "gmssl"

    def __init__(self) -> None:
        from gmssl import func, sm2, sm3

        self._sm3, self._func = sm3, func
        d = int.from_bytes(os.urandom(32), "big") % (int(sm2.default_ecc_table["n"], 16) - 1) + 1
        probe = sm2.CryptSM2(private_key=f"{d:064x}", public_key="00" * 64)
        public = probe._kg(d, sm2.default_ecc_table["g"])
        self.crypt = sm2.CryptSM2(private_key=f"{d:064x}", public_key=public)
        self.vector = sm2.CryptSM2(private_key=f"{VECTOR_D:064x}", public_key=f"{VECTOR_X:064x}{VECTOR_Y:064x}")
        self.derived = probe._kg(VECTOR_D, sm2.default_ecc_table["g"])
        self.signature = self.crypt.sign_with_sm3(DATA)

    def sm3(self, data: bytes) -> str:
        return str(self._sm3.sm3_hash(self._func.bytes_to_list(data)))

    def vector_verifies(self, signature: bytes) -> bool:
        return bool(self.derived.lower() == f"{VECTOR_X:064x}{VECTOR_Y:064x}"
                    and self.vector.verify_with_sm3(signature.hex(), VECTOR_MESSAGE))

    def sign_verify(self) -> tuple[Callable[[], Any], Callable[[], Any]]:
        return (lambda: self.crypt.sign_with_sm3(DATA)), (lambda: self.crypt.verify_with_sm3(self.signature, DATA))


def p256() -> tuple[Callable[[], Any], Callable[[], Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    signature = key.sign(DATA, algorithm)
    public = key.public_key()
    return (lambda: key.sign(DATA, algorithm)), (lambda: public.verify(signature, DATA, algorithm))


def passes(candidate: Candidate) -> dict[str, bool]:
    tampered = bytearray(VECTOR_SIGNATURE)
    tampered[-1] ^= 1
    return {
        "sm3_abc": candidate.sm3(SM3_VECTORS[0][0]) == SM3_VECTORS[0][1],
        "sm3_abcd16": candidate.sm3(SM3_VECTORS[1][0]) == SM3_VECTORS[1][1],
        "sm2_signature_verifies": candidate.vector_verifies(VECTOR_SIGNATURE),
        "sm2_tampered_refused": not candidate.vector_verifies(bytes(tampered)),
    }


def _per_call_us(fn: Callable[[], Any], n: int) -> float:
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e6
    finally:
        gc.enable()


def measure(rounds: int = 7, budget_s: float = 0.05) -> dict[str, Any]:
    candidates: list[Candidate] = []
    missing: dict[str, str] = {}
    for cls in (Tongsuo, GmSSL):
        try:
            candidates.append(cls())
        except (ImportError, RuntimeError) as exc:  # RuntimeError: sdk.sm2.Sm2Unavailable
            missing[cls.name] = f"not installed: {exc}"
    ops: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {"p256": p256()}
    for candidate in candidates:
        ops[candidate.name] = candidate.sign_verify()
    counts: dict[str, int] = {}
    for name, (sign, verify) in ops.items():  # calls per batch for about budget_s each
        once = max(_per_call_us(sign, 3), _per_call_us(verify, 3)) / 1e6
        counts[name] = max(3, int(budget_s / once))
    samples: dict[str, dict[str, list[float]]] = {name: {"sign": [], "verify": []} for name in ops}
    names = list(ops)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            sign, verify = ops[name]
            samples[name]["sign"].append(_per_call_us(sign, counts[name]))
            samples[name]["verify"].append(_per_call_us(verify, counts[name]))
    us = {name: {op: round(statistics.median(v), 1) for op, v in s.items()} for name, s in samples.items()}
    results: dict[str, Any] = {"p256_cryptography": {"sign_us": us["p256"]["sign"], "verify_us": us["p256"]["verify"]}}
    passing = []
    for candidate in candidates:
        checks = passes(candidate)
        entry = {"vectors": checks, "passes": all(checks.values()),
                 "sign_us": us[candidate.name]["sign"], "verify_us": us[candidate.name]["verify"],
                 "sign_vs_p256": round(us[candidate.name]["sign"] / us["p256"]["sign"], 2),
                 "verify_vs_p256": round(us[candidate.name]["verify"] / us["p256"]["verify"], 2)}
        results[candidate.name] = entry
        if entry["passes"]:
            passing.append(candidate.name)
    chosen = min(passing, key=lambda n: us[n]["verify"]) if passing else None
    return {"rounds": rounds, "candidates": results, "missing": missing, "chosen": chosen}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sm2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
