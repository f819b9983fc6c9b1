"""``python -m bench.clearing_memory --quick`` runs on real PostgreSQL and prints its JSON document; its
statements equal a count made here from the generator's shape (no time or memory is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.clearing_memory import QUICK_TRIPS
from codeservice.demo import DEMO_OPERATORS
from tests.conftest import POSTGRES_URL


def test_clearing_memory_quick_prints_both_days_with_statements_equal_to_a_recount(postgres_database: str,
                                                                                  tmp_path: Path):
    out = tmp_path / "memory.json"
    run = subprocess.run([sys.executable, "-m", "bench.clearing_memory", "--quick", "--postgres", POSTGRES_URL,
                          "--out", str(out)], capture_output=True, text=True, check=False, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout)
    assert doc == json.loads(out.read_text())
    assert {"what", "records", "days", "peak_rss_ratio", "within_20_percent", "totals_match", "machine"} <= set(doc)
    assert doc["records"] == QUICK_TRIPS and doc["totals_match"] is True and len(doc["days"]) == 2
    bus_lines = next(o for o in DEMO_OPERATORS if o["id"] == "qd-bus")["fares"]["lines"]
    lines = sorted(bus_lines)
    for day, size in zip(doc["days"], (QUICK_TRIPS, 2 * QUICK_TRIPS), strict=True):
        assert day["records"] == size
        assert day["peak_rss_mb"] > 0 and day["clearing_s"] > 0
        metro, bus = day["statements"]["qd-metro"], day["statements"]["qd-bus"]
        half = size // 2 // 2 * 2
        assert (metro["records"], metro["trips"], metro["by_status"]) == (half, half // 2, {"paired": half // 2})
        assert (bus["records"], bus["trips"], bus["by_status"]) == (size - half, size - half, {"ride": size - half})
        rides = [lines[g % len(lines)] for g in range(size - half)]  # bus record g rides line g mod lines
        assert bus["fare_total"] == bus["charged_total"] == sum(int(bus_lines[line]) for line in rides)
        assert metro["fare_total"] == metro["charged_total"] > 0
        assert metro["duplicates"] == bus["duplicates"] == 0
    assert doc["peak_rss_ratio"] == round(doc["days"][1]["peak_rss_mb"] / doc["days"][0]["peak_rss_mb"], 3)
