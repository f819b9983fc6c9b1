"""The transit benchmarks run at tiny sizes, so that they cannot rot: bench/transit.py end to end against
PostgreSQL and Redis (gunicorn, uploads, clearing), and the ride-code section of bench/run.py. Only counts
and shapes are checked, never a timing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_transit_runs_at_tiny_sizes(postgres_database, redis_url, tmp_path):
    out = tmp_path / "transit.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.transit", "--trips", "50", "--records", "200", "--rounds", "2",
         "--concurrency", "2", "--workers", "1", "--threads", "2", "--postgres", POSTGRES_URL, "--redis", redis_url,
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert json.loads(run.stdout) == doc
    upload = doc["upload"]
    assert upload["records_per_round"] == 100 and upload["rounds"] == 2
    counts = upload["counts"]
    assert counts["uploaded"] == counts["stored"] == counts["resent"] == counts["duplicates"] == 200
    assert counts["direct"] == 200 and counts["errors"] == 0
    for name in ("upload_records_per_s", "resend_records_per_s", "health_requests_per_s", "direct_insert_rows_per_s"):
        assert upload[name]["median"] > 0
    assert set(upload["upload_over_direct_insert"]) == {"of_medians", "median_per_round"}
    clearing = doc["clearing"]
    assert clearing["fill"]["records"] == 100
    assert clearing["statement"]["trips"] == 50 and clearing["statement"]["by_status"] == {"paired": 50}
    assert clearing["clearing_s"] > 0 and len(clearing["baseline_select_s"]) == 2
    assert clearing["clearing_peak_rss_mb"] > 0


def test_bench_run_ride_section_at_tiny_sizes(tmp_path):
    from bench.run import QUICK, bench_ride_qr, bench_ride_verify, make_ride_setup

    plan = dataclasses.replace(QUICK, verify_rounds=2, ride_calls=20, ride_cold_calls=10)
    rides = make_ride_setup(tmp_path)
    verify = bench_ride_verify(rides, plan)
    assert verify["codes_made"] == (2 + 2 * 20) + 2 * (1 + 2 * 10)  # warm, then cold and key-seen codes
    # every cold code is a new phone: its device key is decompressed; a key-seen code's new credential finds the
    # phone's key in the cache; a warm code's credential was checked before and holds its key
    assert verify["device_key_cache"]["misses"] == 1 + 2 * 10
    assert verify["device_key_cache"]["hits"] == 1 + 2 * 10
    # the warm phone's credential, the set-up's revoked phone's, then every cold and key-seen code's
    assert verify["credentials_held"] == 1 + 1 + 2 * (1 + 2 * 10)
    for name in ("ratio_warm", "ratio_cold", "ratio_key_seen", "cold_over_warm"):
        assert verify[name]["of_medians"] > 0
    qr = bench_ride_qr(rides)
    for name in ("service_default", "largest"):
        assert qr[name]["alphanumeric"] and qr[name]["qr_version_at_M"] >= 1


def test_bench_run_cli_batch_at_tiny_sizes(tmp_path):
    from bench.run import QUICK, bench_cli_batch, make_setup

    plan = dataclasses.replace(QUICK, verify_calls=50, cli_codes=30, cli_rounds=1)
    batch = bench_cli_batch(make_setup(tmp_path), tmp_path, plan)  # raises unless every code was accepted
    assert batch["codes"] == 30 and batch["rounds"] == 1
    assert batch["process_start_s"]["median"] > 0 and batch["raw_verify_us"]["median"] > 0
    for name in ("ratio", "ratio_in_process", "ratio_sdk"):
        assert name in batch
