"""bench/dashboard.py at its --quick size as a correctness test on real PostgreSQL: the JSON document's shape,
every dashboard endpoint measured for every operator, and the endpoints' totals (taps, trips, gates, refusals,
card types, the reference day's taps) equal to SQL counts of the generated rows. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
OPERATORS = {"qd-metro", "xh-metro", "qd-bus", "laoshan"}


@pytest.mark.slow
def test_a_quick_dashboard_day_reports_every_endpoint_with_totals_equal_to_sql_counts(postgres_database, redis_url,
                                                                                       tmp_path):
    out = tmp_path / "dashboard.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.dashboard", "--quick", "--taps", "20000", "--gates", "200", "--rounds", "2",
         "--postgres", POSTGRES_URL, "--redis", redis_url, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert json.loads(run.stdout) == doc
    assert doc["totals_match"] is True and "problems" not in doc
    assert set(doc["rows"]["day"]) == OPERATORS and set(doc["baseline"]) == OPERATORS
    assert doc["taps"] == sum(doc["rows"]["day"].values()) == sum(c["taps"] for c in doc["counts"].values())
    assert 19_000 <= doc["taps"] <= 21_000 and doc["taps_reference_day"] > 0
    for operator, counts in doc["counts"].items():
        assert counts["trips"] > 0 and counts["gates"] > 1 and counts["taps_reference"] > 0, operator
    assert doc["counts"]["qd-metro"]["refusals"]["passback"] > 0
    assert set(doc["counts"]["qd-bus"]["card_types"]) == {"adult", "student", "elderly", "disabled"}
    names = set(doc["endpoints"])
    for part in ("day", "gates", "clearing"):
        assert {f"operator/{part}@{o}" for o in OPERATORS} <= names
    assert {"city/day", "city/state"} <= names
    for figures in doc["endpoints"].values():
        for key in ("first_ms", "median_ms", "p95_ms", "over_baseline", "within_300ms"):
            assert key in figures
        assert figures["calls"] == 2
    assert isinstance(doc["all_within_300ms"], bool) and doc["slowest"] in names
    assert doc["clearing"]["day"]["seconds"].keys() == OPERATORS
    assert len(doc["machine"]["load_average_at_start"]) == 3 and doc["machine"]["postgresql"]
