"""bench.sm2 checks each SM2 library against the standard's vectors and keeps one that passes; bench.run's ``sm2``
part reports SM2 beside P-256 and the codes' sizes signed with SM2. No timing is judged."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from bench import run as bench_run

ROOT = Path(__file__).resolve().parent.parent


def test_bench_sm2_keeps_a_library_that_passes_the_standards_vectors():
    out = subprocess.run([sys.executable, "-m", "bench.sm2", "--rounds", "1"], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=300)
    result = json.loads(out.stdout)
    tongsuo = result["candidates"]["tongsuopy"]
    assert tongsuo["passes"] and all(tongsuo["vectors"].values())
    passing = [name for name, c in result["candidates"].items() if c.get("passes")]
    assert result["chosen"] in passing
    assert result["candidates"]["p256_cryptography"]["verify_us"] > 0


def test_bench_run_reports_sm2_beside_p256_and_the_size_of_every_code_kind_signed_with_sm2(tmp_path):
    plan = dataclasses.replace(bench_run.QUICK, verify_rounds=1, verify_calls=20)
    es = bench_run.make_setup(tmp_path)
    doc = bench_run.bench_sm2(tmp_path, plan, es, bench_run.make_cert_setup(tmp_path),
                              bench_run.make_ride_setup(tmp_path))
    assert doc["available"] and set(doc["raw_us"]) == {"p256_sign", "sm2_sign", "p256_verify", "sm2_verify"}
    assert doc["verify_sm2_vs_p256"]["of_medians"] > 0 and doc["sdk_verify_sm2_vs_es256"]["of_medians"] > 0
    sm, es256 = doc["qr"]["sm2"], doc["qr"]["es256"]
    assert set(sm) == set(es256) == {"identity_code", "elderly_card", "business_licence", "ride_code"}
    for kind in sm:
        # alg -70001 takes 5 bytes in the protected header where -7 takes 1: 4 bytes, 6 base45 characters more
        assert sm[kind]["length_chars"] == es256[kind]["length_chars"] + 6
        assert sm[kind]["qr_version_at_M"] >= es256[kind]["qr_version_at_M"]
