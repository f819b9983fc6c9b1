"""bench/cityday.py at its --quick size as a correctness test, against real PostgreSQL and Redis under
gunicorn: every generated record stored once, the retries after a lost answer and the copies of a code answered
as duplicates, and every operator's statement equal to the bench's independent recomputation (totals_match).
No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_quick_city_day_clears_to_the_independent_recomputation(postgres_database, redis_url, tmp_path):
    out = tmp_path / "cityday.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.cityday", "--quick", "--taps", "2500", "--gates", "40", "--concurrency", "4",
         "--workers", "2", "--threads", "2", "--postgres", POSTGRES_URL, "--redis", redis_url, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert json.loads(run.stdout) == doc
    assert doc["totals_match"] is True and "problems" not in doc
    assert set(doc["operators"]) == {"qd-metro", "xh-metro", "qd-bus", "laoshan"}
    for key in ("taps", "gates", "phones", "upload_s", "upload_records_per_s", "raw_verify_us", "signatures_verified",
                "floor_records_per_s", "clearing_s", "total_s", "total_s_at_60us", "peak_rss_mb"):
        assert key in doc, key
    assert doc["taps"] >= 2500 and doc["gates"] > 8 and doc["phones"] > 100
    assert doc["retries"]["resent"] > 0 and doc["retries"]["code_copies"] > 0
    metro = doc["statements"]["qd-metro"]["by_status"]
    assert metro["paired"] > 0 and metro["unpaired_entry"] > 0 and metro["unpaired_exit"] > 0
    assert all(statement["duplicates"] >= 0 for statement in doc["statements"].values())
    assert sum(statement["duplicates"] for statement in doc["statements"].values()) == doc["retries"]["code_copies"]
