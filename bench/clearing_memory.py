"""Clearing's peak memory for one operating day and for a day twice as large (issue 9: the same within 20%).

    python -m bench.clearing_memory [--trips N] [--postgres URL] [--out FILE]
    python -m bench.clearing_memory --quick        # N = 2,000: a few seconds, for the test suite

``--trips N`` (default 1,000,000) is the number of gate records of the first day; the second day has 2N. Each
day is half metro (paired taps: an entry and an exit record a trip, two trips an account) and half bus (one
record a ride). The records are written straight into PostgreSQL by one ``INSERT ... SELECT ... FROM
generate_series`` a day and operator (not through the HTTP service or its signature checks: this bench is about
clearing, bench/cityday.py runs the whole day through the service), into a throw-away database made by
``citycode init`` (demo operators, the day partitions of migration 0015).

Then ``codeservice.transit.clearing.run_clearing`` clears both operators of a day, committed, in a child process
of its own (the set-based SQL path of codeservice/transit/clearing_sql.py on PostgreSQL), first the day of N,
then the day of 2N. The child's peak resident memory is ``ru_maxrss`` of the rusage ``os.wait4`` returns for that
child (its own, not the maximum over every child so far); the child reports its ``VmHWM`` too. The statements
are checked against an independent count of the generated records (records, trips by status, and the fare total
from the fare rules applied to a ``GROUP BY`` of the generated station pairs and lines): the bench fails if they
differ. Nothing is asserted about time or memory; it prints one JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench.run import emit, machine
from codeservice.config import Settings
from codeservice.services import Services
from codeservice.transit.clearing import run_clearing
from codeservice.transit.models import Operator
from codeservice.transit.partitions import ensure_partitions
from codeservice.transit.service import rules_of
from sdk.citytime import CITY_TZ, DAY_START_HOUR, service_day

DEFAULT_POSTGRES = os.environ.get("CITYCODE_TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test")
OPERATORS = ("qd-metro", "qd-bus")
QUICK_TRIPS = 2_000
CITYCODE = str(Path(sys.executable).with_name("citycode"))

#: The metro half of a day: record g = 2k is the entry of trip k, g = 2k + 1 its exit; trip k belongs to account
#: k / 2, whose first trip starts between 05:00 and 11:00 and second between 15:00 and 21:00 (never overlapping),
#: 10 to 59 minutes long, from station k mod n to another station. Every trip is paired.
_METRO = """
INSERT INTO gate_records (record_id, device_id, operator_id, gate_id, scene, station, line, direction, at,
                          service_day, accepted, reason, kind, account, card_type, fare_limit, credential_id,
                          code_id, entitlement, online, received_at, evidence, code_key, duplicate_of)
SELECT md5(:tag || '-m-' || g), :device, 'qd-metro', 'gate-' || (g % 400), 'metro-gate',
       (CAST(:stations AS text[]))[1 + CASE WHEN g % 2 = 0 THEN t.origin ELSE t.destination END], NULL,
       CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END,
       CAST(:start AS timestamptz)
           + make_interval(secs => t.begins + CASE WHEN g % 2 = 0 THEN 0 ELSE t.minutes * 60 END),
       :day, true, 'ok', 'ride', 'm' || :tag || '-' || (g / 4), 'adult', 100000, NULL, md5(:tag || '-mc-' || g),
       NULL, false, CAST(:start AS timestamptz) + interval '1 day', NULL, NULL, NULL
FROM generate_series(0, :records - 1) AS g,
     LATERAL (SELECT (g / 2) % :n AS origin,
                     ((g / 2) % :n + 1 + ((g / 2) / :n) % (:n - 1)) % :n AS destination,
                     3600 + ((g / 4) % 21600) + CASE WHEN (g / 2) % 2 = 0 THEN 0 ELSE 36000 END AS begins,
                     10 + (g / 2) % 50 AS minutes) AS t
"""

#: The bus half: one record a ride, line g mod lines, at a moment of 05:00 to 23:00; three rides an account.
_BUS = """
INSERT INTO gate_records (record_id, device_id, operator_id, gate_id, scene, station, line, direction, at,
                          service_day, accepted, reason, kind, account, card_type, fare_limit, credential_id,
                          code_id, entitlement, online, received_at, evidence, code_key, duplicate_of)
SELECT md5(:tag || '-b-' || g), :device, 'qd-bus', 'bus-' || (g % 2000), 'bus', NULL,
       (CAST(:lines AS text[]))[1 + g % :n], NULL,
       CAST(:start AS timestamptz) + make_interval(secs => 3600 + (g * 37) % 64800), :day, true, 'ok', 'ride',
       'b' || :tag || '-' || (g / 3), 'adult', 100000, NULL, md5(:tag || '-bc-' || g), NULL, false,
       CAST(:start AS timestamptz) + interval '1 day', NULL, NULL, NULL
FROM generate_series(0, :records - 1) AS g
"""


def _rules(engine: sa.Engine) -> dict[str, Any]:

    with Session(engine) as session:
        return {op: rules_of(session.get_one(Operator, op)) for op in OPERATORS}


def _stations(rules: dict[str, Any]) -> list[str]:
    return sorted({a for a, _ in rules["qd-metro"].distances})


def _lines(rules: dict[str, Any]) -> list[str]:
    return sorted(rules["qd-bus"].raw["lines"])


def split(records: int) -> tuple[int, int]:
    """(metro records, an even number; bus records) of a day of *records*."""
    metro = (records // 2) // 2 * 2
    return metro, records - metro


def fill_day(engine: sa.Engine, rules: dict[str, Any], day: dt.date, records: int, device: int) -> dict[str, Any]:
    """Write the day's *records* records (half metro, half bus) by INSERT ... SELECT FROM generate_series."""
    metro, bus = split(records)
    start = dt.datetime.combine(day, dt.time(DAY_START_HOUR), CITY_TZ)
    stations, lines = _stations(rules), _lines(rules)
    tag = day.strftime("%Y%m%d")
    ensure_partitions(engine, day, 1)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(_METRO), {"tag": tag, "device": device, "start": start, "day": day, "records": metro,
                                       "stations": stations, "n": len(stations)})
        conn.execute(sa.text(_BUS), {"tag": tag, "device": device, "start": start, "day": day, "records": bus,
                                     "lines": lines, "n": len(lines)})
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE gate_records"))
    return {"records": metro + bus, "metro_records": metro, "bus_records": bus, "insert_s": round(seconds, 1)}


def expected(rules: dict[str, Any], records: int) -> dict[str, dict[str, int | dict[str, int]]]:
    """The statements of a generated day, recomputed from the generator's formulas (not from the database nor
    from clearing): every metro trip paired, priced by the fare rules between its two stations; every bus record
    a ride at its line's flat fare; adult cards with a limit above every fare, so charged = fare."""
    metro_rules, bus_rules = rules["qd-metro"], rules["qd-bus"]
    stations, lines = _stations(rules), _lines(rules)
    n, m = len(stations), len(lines)
    metro, bus = split(records)
    trips = metro // 2
    fare = 0
    for k in range(trips):
        origin = k % n
        fare += metro_rules.metro_fare(stations[origin], stations[(origin + 1 + (k // n) % (n - 1)) % n])
    bus_fare = sum(int(bus_rules.raw["lines"][lines[i]]) * len(range(i, bus, m)) for i in range(m))
    return {"qd-metro": {"records": metro, "trips": trips, "by_status": {"paired": trips}, "fare_total": fare,
                         "charged_total": fare},
            "qd-bus": {"records": bus, "trips": bus, "by_status": {"ride": bus}, "fare_total": bus_fare,
                       "charged_total": bus_fare}}


def _peak_mb(kilobytes: int) -> float:
    return round(kilobytes / 1024, 1)


def child_main(day: dt.date) -> int:
    """In the child: clear both operators of *day*, one transaction each; print the statements and times."""
    services = Services(Settings.from_env(os.environ))
    out: dict[str, Any] = {"statements": {}}
    started = time.perf_counter()
    for operator in OPERATORS:
        begun = time.perf_counter()
        with services.db.session() as session:
            st = run_clearing(session, operator, day)
            out["statements"][operator] = {
                "records": st.records, "duplicates": st.duplicates, "trips": st.trips, "by_status": st.by_status,
                "fare_total": st.fare_total, "charged_total": st.charged_total, "digest": st.digest,
                "seconds": round(time.perf_counter() - begun, 2)}
    out["clearing_s"] = round(time.perf_counter() - started, 2)
    services.db.dispose()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out["vmhwm_mb"] = _peak_mb(int(line.split()[1]))
    print(json.dumps(out))
    return 0


def run_child(env: dict[str, str], day: dt.date) -> dict[str, Any]:
    """Clear *day* in a child process; its output with its own peak RSS (``ru_maxrss`` from ``os.wait4``)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen([sys.executable, "-m", "bench.clearing_memory", "--child", day.isoformat()],
                                 env=env, stdout=stdout, stderr=stderr)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"bench: the clearing child failed:\n{stderr.read().decode()[-3000:]}")
        result: dict[str, Any] = json.loads(stdout.read())
    result["peak_rss_mb"] = _peak_mb(usage.ru_maxrss)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clearing_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips", type=int, default=1_000_000, help="gate records of the first day (the second: 2N)")
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_TRIPS:,}")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a database used to create a throw-away one")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(dt.date.fromisoformat(args.child))
    records = QUICK_TRIPS if args.quick else args.trips
    if records < 8:
        parser.error("--trips: at least 8")

    load = [round(x, 2) for x in os.getloadavg()]
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"citycode_bench_memory_{uuid.uuid4().hex[:8]}"
    url = args.postgres.rsplit("/", 1)[0] + "/" + name
    home = Path(tempfile.mkdtemp(prefix="citycode-clearing-memory-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
           "CITYCODE_HOME": str(home), "CITYCODE_DATABASE_URL": url}
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = None
    try:
        subprocess.run([CITYCODE, "init"], env=env, check=True, capture_output=True)
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            device = conn.scalar(sa.text(
                "INSERT INTO api_clients (name, role, key_hash, allowed_types, allowed_predicates, active, "
                "rate_per_minute, operator_id) VALUES ('bench gates', 'device', 'not-a-key', '[]', '[]', false, 0, "
                "'qd-metro') RETURNING id"))
        rules = _rules(engine)
        today = dt.date.fromisoformat(service_day(time.time()))
        days = []
        for size, day in ((records, today - dt.timedelta(days=3)), (2 * records, today - dt.timedelta(days=2))):
            filled = fill_day(engine, rules, day, size, device)
            cleared = run_child(env, day)
            want = expected(rules, size)
            got = {op: {k: cleared["statements"][op][k] for k in want[op]} for op in OPERATORS}
            if got != want:
                raise SystemExit(f"bench: the statements of {day} differ from the recount:\n{got}\n{want}")
            days.append({"service_day": day.isoformat(), **filled, "clearing_s": cleared["clearing_s"],
                         "peak_rss_mb": cleared["peak_rss_mb"], "vmhwm_mb": cleared.get("vmhwm_mb"),
                         "statements": cleared["statements"], "totals_match": True})
        with engine.connect() as conn:
            postgres = conn.scalar(sa.text("SHOW server_version"))
    finally:
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)
    ratio = days[1]["peak_rss_mb"] / days[0]["peak_rss_mb"]
    doc = {
        "what": "codeservice.transit.clearing.run_clearing for qd-metro and qd-bus of one day, committed, in a child "
                "process (set-based SQL in PostgreSQL); records written by INSERT ... SELECT generate_series, not "
                "through the service; peak RSS: ru_maxrss of the child (os.wait4)",
        "records": records, "days": days,
        "peak_rss_ratio": round(ratio, 3), "within_20_percent": abs(ratio - 1) <= 0.2,
        "clearing_s_ratio": round(days[1]["clearing_s"] / max(days[0]["clearing_s"], 0.01), 2),
        "totals_match": all(d["totals_match"] for d in days),
        "machine": {**machine(), "postgresql": postgres, "load_average_at_start": load},
    }
    emit(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
