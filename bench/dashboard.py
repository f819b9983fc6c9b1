"""The dashboards' JSON endpoints on a generated operating day of millions of taps, on PostgreSQL.

    python -m bench.dashboard [--taps 5000000] [--quick] [--out FILE] [--postgres URL]

1. *database*: a throw-away PostgreSQL database made by ``citycode init`` (``bench.transit.Environment``: the
   schema by the migrations, the demo operators), plus a second metro (``xh-metro``, as in bench/cityday.py).
2. *generate* (timed, not the point): one operating day of ``--taps`` gate records and the same weekday a week
   before (``--reference-share`` of the size, default the same), written **straight into PostgreSQL** by one
   ``INSERT ... SELECT`` over ``generate_series`` per operator and day: not through the upload API and without
   codes or evidence (bench/cityday.py measures the upload path; here only the records' columns matter). The
   rows go through the parent table ``gate_records``, so the same statement fills a partitioned table; its
   secondary indexes are dropped for the load and built again after it (the same definitions). The day:
   two metros (45% and 20% of the taps; journeys of an entry and an exit, 2% exits without an entry, 4% entries
   never tapped out, 3% with a passback refusal), a bus company (30%, accounts that ride again) and a scenic
   site (5%); ``--gates`` gates shared in the same proportions (a twentieth of them uploading hours late); a
   morning peak about 08:00 and an evening one about 18:00; card types adult, student, elderly, disabled;
   2% of the bus and scenic scans refused (expired, revoked, bad signature, replayed).
3. *clearing* (timed): the real ``run_clearing`` (codeservice/transit/clearing_sql.py on PostgreSQL) for every
   operator, the day and the reference day, so that trips and statements exist.
4. *endpoints*: every GET under ``/api/v1/dashboard/`` in codeservice/openapi.json, called through the real
   Flask app (``create_app`` on the bench's database, the test client) with real keys (an operator key for each
   operator, an auditor key): a first call, then ``--rounds`` calls, the endpoints interleaved round by round.
   Baseline in the same rounds: ``codeservice.dashboard.service.baseline_count`` (a plain ``COUNT(*)`` of the
   operator's day) in a session of the same engine.
5. *check*: the endpoints' totals equal SQL counts of the generated rows (taps, trips, gates, refusals, card
   types); the bench exits 1 if they differ.

Prints one JSON document (bench/README.md, "Dashboards on a 5-million-tap day"). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.cityday import DISCOUNTS, XH_METRO, demo
from bench.run import emit, machine
from bench.transit import Environment
from codeservice.app import create_app
from codeservice.clients.service import add_api_client
from codeservice.dashboard.service import baseline_count
from codeservice.transit.clearing import run_clearing
from codeservice.transit.partitions import ensure_partitions
from codeservice.transit.service import add_operator
from sdk.citytime import service_day

CST = dt.timezone(dt.timedelta(hours=8))
SHARES = {"qd-metro": 0.45, "xh-metro": 0.2, "qd-bus": 0.3, "laoshan": 0.05}
QUICK = {"taps": 50_000, "gates": 400, "rounds": 3}
FULL = {"taps": 5_000_000, "gates": 10_000, "rounds": 9}
TARGET_MS = 300.0
#: Taps a metro journey makes on average: 2% one exit, 4% one entry, 3% entry, refusal and exit, the rest two.
TAPS_PER_JOURNEY = 0.02 + 0.04 + 0.03 * 3 + 0.91 * 2
REFUSALS = ["expired", "revoked", "bad_signature", "replayed"]
OPENAPI = Path(__file__).resolve().parent.parent / "codeservice" / "openapi.json"

_COLUMNS = ("record_id, device_id, operator_id, gate_id, scene, station, line, direction, at, service_day, "
            "accepted, reason, kind, account, card_type, fare_limit, online, received_at")

# Per-row draws in a subquery kept whole (OFFSET 0), so that each random() is drawn once a row. ``minute``: after
# 04:00, a morning peak (08:00, sd 45 min), an evening one (18:00, sd 60 min) and the rest spread out.
_MINUTE = """LEAST(1150.0, GREATEST(30.0, CASE
        WHEN u < 0.35 THEN 240 + 45 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())
        WHEN u < 0.70 THEN 840 + 60 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())
        ELSE 60 + 1080 * random() END))"""
# The account's card type and fare limit follow from its number (so an account keeps them all day).
_CARD = """(CASE WHEN n % 20 < 14 THEN 'adult' WHEN n % 20 < 17 THEN 'student' WHEN n % 20 < 19 THEN 'elderly'
            ELSE 'disabled' END)"""
_LIMIT = "(CASE n % 6 WHEN 4 THEN 350 WHEN 5 THEN 150 ELSE 2000 END)"
# A twentieth of the gates upload hours late; the rest within five minutes of the scan.
_RECEIVED = """at + make_interval(secs => CASE WHEN g % 20 = 0 THEN 2000 + 5000 * late ELSE 1 + 299 * late END)"""

_METRO = f"""
INSERT INTO gate_records ({_COLUMNS})
SELECT :prefix || lpad(s.n::text, 10, '0') || r.part, :device, :operator, (CAST(:gate_ids AS text[]))[r.g], 'metro',
       (CAST(:stations AS text[]))[r.g], NULL, r.direction, r.at, :day, r.accepted, r.reason, 'ride',
       :prefix || s.n, {_CARD.replace('n %', 's.n %')}, {_LIMIT.replace('n %', 's.n %')}, false,
       r.at + make_interval(secs => CASE WHEN r.g % 20 = 0 THEN 2000 + 5000 * s.late ELSE 1 + 299 * s.late END)
FROM (
    SELECT n, shape, late, 1 + floor(random() * :gates)::int AS g_in, 1 + floor(random() * :gates)::int AS g_out,
           :start + make_interval(secs => minute * 60 + 59 * random()) AS entered, 300 + 3900 * random() AS ride
    FROM (SELECT n, random() AS shape, random() AS late, {_MINUTE} AS minute
          FROM (SELECT n, random() AS u FROM generate_series(1, :count) AS n OFFSET 0) a OFFSET 0) b
    OFFSET 0
) s
CROSS JOIN LATERAL (VALUES
    ('a', 'in', s.g_in, s.entered, true, 'ok'),
    ('b', 'in', s.g_in, s.entered + interval '40 seconds', false, 'passback'),
    ('c', 'out', s.g_out, s.entered + make_interval(secs => s.ride), true, 'ok')
) AS r(part, direction, g, at, accepted, reason)
WHERE (r.part = 'a' AND s.shape >= 0.02) OR (r.part = 'b' AND s.shape >= 0.06 AND s.shape < 0.09)
   OR (r.part = 'c' AND (s.shape < 0.02 OR s.shape >= 0.06))
"""

# One scan a row (bus: accounts drawn from a pool, so that they ride again; scenic site: entries 06:00-15:40).
_SINGLE = f"""
INSERT INTO gate_records ({_COLUMNS})
SELECT :prefix || lpad(s.i::text, 10, '0'), :device, :operator, (CAST(:gate_ids AS text[]))[s.g], :scene,
       (CAST(:stations AS text[]))[s.g], (CAST(:lines AS text[]))[s.g], NULL, s.at, :day, s.refusal IS NULL,
       COALESCE(s.refusal, 'ok'), 'ride', :prefix || 'a' || s.n, {_CARD}, CASE WHEN :scene = 'bus' THEN {_LIMIT} END,
       false, {_RECEIVED}
FROM (
    SELECT i, n, g, late, refusal,
           :start + make_interval(secs => (CASE WHEN :scene = 'scenic' THEN 120 + 580 * u ELSE minute END) * 60
                                          + 59 * random()) AS at
    FROM (SELECT i, u, 1 + floor(random() * :pool)::bigint AS n, 1 + floor(random() * :gates)::int AS g,
                 random() AS late, {_MINUTE} AS minute,
                 CASE WHEN random() < 0.02 THEN (CAST(:refusals AS text[]))[1 + floor(random() * 4)::int] END
                 AS refusal
          FROM (SELECT i, random() AS u FROM generate_series(1, :count) AS i OFFSET 0) a OFFSET 0) b
    OFFSET 0
) s
"""


def gates_of(operator: str, count: int) -> list[dict[str, Any]]:
    """The operator's gates: metro gates at its stations in turn, bus readers on its lines (and a line not in the
    fare table), the scenic site's gates at its sites."""
    if operator in ("qd-metro", "xh-metro"):
        fares: dict[str, Any] = XH_METRO if operator == "xh-metro" else demo(operator)["fares"]
        network: dict[str, list[list[Any]]] = fares["lines"]
        stations = sorted({s for line in network.values() for s, _ in line})
        return [{"gate_id": f"{operator}-{stations[n % len(stations)]}-{n}", "station": stations[n % len(stations)],
                 "line": None} for n in range(count)]
    if operator == "qd-bus":
        lines = [*demo(operator)["fares"]["lines"], "901"]
        return [{"gate_id": f"qd-bus-r{n}", "station": None, "line": lines[n % len(lines)]} for n in range(count)]
    sites = sorted(demo(operator)["fares"]["sites"])
    return [{"gate_id": f"laoshan-{sites[n % len(sites)]}-{n}", "station": sites[n % len(sites)], "line": None}
            for n in range(count)]


def generate(engine: sa.Engine, day: dt.date, taps: int, gates: dict[str, list[dict[str, Any]]],
             devices: dict[str, int], seed: float) -> dict[str, Any]:
    """One operating day of about *taps* gate records, one INSERT ... SELECT per operator; returns the rows
    written and the seconds each statement took."""
    start = dt.datetime.combine(day, dt.time(4, 0), CST)
    out: dict[str, Any] = {"rows": {}, "seconds": {}}
    ensure_partitions(engine, day, 1)  # the day's partitions of gate_records and trips (a week back: not made ahead)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT setseed(:seed)"), {"seed": seed})
        for code, (operator, share) in enumerate(SHARES.items()):
            budget = max(1, round(taps * share))
            own = gates[operator]
            params = {"prefix": f"{day:%Y%m%d}o{code}", "device": devices[operator], "operator": operator,
                      "gate_ids": [g["gate_id"] for g in own], "stations": [g["station"] for g in own],
                      "lines": [g["line"] for g in own], "gates": len(own), "day": day, "start": start}
            started = time.perf_counter()
            if operator.endswith("metro"):
                result = conn.execute(sa.text(_METRO), {**params, "count": max(1, round(budget / TAPS_PER_JOURNEY))})
            else:
                scene = "bus" if operator == "qd-bus" else "scenic"
                result = conn.execute(sa.text(_SINGLE), {
                    **params, "count": budget, "scene": scene, "refusals": REFUSALS,
                    "pool": max(1, budget // 2 if scene == "bus" else budget)})
            out["rows"][operator] = result.rowcount
            out["seconds"][operator] = round(time.perf_counter() - started, 2)
    return out


def secondary_indexes(engine: sa.Engine) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of gate_records' indexes other than its primary key (on a partitioned
    table: the parent's, which cover every partition)."""
    with engine.connect() as conn:
        return [(name, definition) for name, definition in conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'gate_records' AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = 'gate_records'::regclass) ORDER BY indexname"))]


# -- measuring ---------------------------------------------------------------------------------------------
def dashboard_operations() -> list[tuple[str, list[str]]]:
    """Every GET under /api/v1/dashboard/ in the OpenAPI document, with the names of its query parameters."""
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    out = []
    for path, item in sorted(doc["paths"].items()):
        if path.startswith("/api/v1/dashboard/") and "get" in item and "{" not in path:
            names = []
            for p in item["get"].get("parameters", []):
                if "$ref" in p:
                    p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                if p.get("in") == "query":
                    names.append(p["name"])
            out.append((path, names))
    return out


def summary_ms(first: float, samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * (len(ordered) - 1))))]
    return {"first_ms": round(first, 2), "median_ms": round(statistics.median(samples), 2), "p95_ms": round(p95, 2),
            "min_ms": round(ordered[0], 2), "max_ms": round(ordered[-1], 2), "calls": len(samples)}


def measure(app: Any, services: Any, day: dt.date, keys: dict[str, str], operators: list[str],
            rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """First call and *rounds* warm calls of every dashboard endpoint (each operator endpoint for each operator)
    and of the baseline, interleaved; returns (timings, bodies of the last call)."""
    client = app.test_client()
    calls: list[tuple[str, str, dict[str, str]]] = []
    for path, params in dashboard_operations():
        query = f"?day={day.isoformat()}" if "day" in params else ""
        if "/operator/" in path:
            for operator in operators:
                calls.append((f"{path.removeprefix('/api/v1/dashboard/')}@{operator}", path + query,
                              {"Authorization": f"Bearer {keys[operator]}"}))
        else:
            calls.append((path.removeprefix("/api/v1/dashboard/"), path + query,
                          {"Authorization": f"Bearer {keys['auditor']}"}))
    bodies: dict[str, Any] = {}
    firsts: dict[str, float] = {}
    samples: dict[str, list[float]] = {name: [] for name, _, _ in calls}
    baseline_names = [f"baseline_count@{o}" for o in operators]
    samples.update({name: [] for name in baseline_names})

    def call(name: str, url: str, headers: dict[str, str]) -> float:
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"bench: {url} for {name}: {response.status_code} {response.get_data(as_text=True)}")
        bodies[name] = response.get_json()
        return elapsed

    def count(operator: str) -> float:
        started = time.perf_counter()
        with services.db.session() as session:
            bodies[f"baseline_count@{operator}"] = baseline_count(session, operator, day)
        return (time.perf_counter() - started) * 1000

    for name, url, headers in calls:
        firsts[name] = call(name, url, headers)
    for operator, name in zip(operators, baseline_names, strict=True):
        firsts[name] = count(operator)
    for n in range(rounds):
        order = calls if n % 2 == 0 else list(reversed(calls))
        for name, url, headers in order:
            samples[name].append(call(name, url, headers))
        for operator, name in zip(operators, baseline_names, strict=True):
            samples[name].append(count(operator))
    timings = {name: summary_ms(firsts[name], samples[name]) for name in samples}
    for name, figures in timings.items():
        if name.startswith("baseline_count@"):
            continue
        base = timings.get(f"baseline_count@{name.split('@', 1)[1]}" if "@" in name else
                           f"baseline_count@{operators[0]}")
        assert base is not None
        figures["over_baseline"] = round(figures["median_ms"] / max(base["median_ms"], 1e-3), 2)
        figures["within_300ms"] = figures["median_ms"] <= TARGET_MS
        figures["p95_within_300ms"] = figures["p95_ms"] <= TARGET_MS
    return timings, bodies


def sql_counts(engine: sa.Engine, operator: str, day: dt.date) -> dict[str, Any]:
    """What the endpoints must say, counted here with plain SQL over the generated rows."""
    q = {"operator": operator, "day": day}
    with engine.connect() as conn:
        taps = conn.execute(sa.text("SELECT count(*) FROM gate_records WHERE operator_id = :operator "
                                    "AND service_day = :day"), q).scalar_one()
        trips = conn.execute(sa.text("SELECT count(*) FROM trips WHERE operator_id = :operator "
                                     "AND service_day = :day"), q).scalar_one()
        gates = conn.execute(sa.text("SELECT count(DISTINCT gate_id) FROM gate_records WHERE operator_id = :operator "
                                     "AND service_day = :day"), q).scalar_one()
        refusals: dict[str, int] = dict(conn.execute(sa.text(
            "SELECT reason, count(*) FROM gate_records WHERE operator_id = :operator AND service_day = :day "
            "AND NOT accepted GROUP BY reason"), q).all())
        cards: dict[str, int] = dict(conn.execute(sa.text(
            "SELECT COALESCE(card_type, 'unknown'), count(*) FROM gate_records WHERE operator_id = :operator "
            "AND service_day = :day AND accepted GROUP BY 1"), q).all())
        week = conn.execute(sa.text("SELECT count(*) FROM gate_records WHERE operator_id = :operator "
                                    "AND service_day = :day"), {**q, "day": day - dt.timedelta(days=7)}).scalar_one()
    return {"taps": int(taps), "trips": int(trips), "gates": int(gates), "taps_reference": int(week),
            "refusals": {k: int(v) for k, v in refusals.items()}, "card_types": {k: int(v) for k, v in cards.items()}}


def check(bodies: dict[str, Any], counts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The endpoints' totals against the SQL counts: the differences found (none when all agree)."""
    problems = []
    for operator, want in counts.items():
        day, gates = bodies[f"operator/day@{operator}"], bodies[f"operator/gates@{operator}"]
        clearing = bodies[f"operator/clearing@{operator}"]
        got = {"taps": day["taps_total"], "trips": day["trips_total"], "gates": len(gates["gates"]),
               "taps_reference": round(sum(day["taps_reference"])),
               "refusals": {r["reason"]: r["taps"] for r in day["refusals"]},
               "card_types": {c["card_type"]: c["taps"] for c in day["card_types"]}}
        extra = {"gate_records": sum(g["records"] for g in gates["gates"]), "baseline": bodies[
            f"baseline_count@{operator}"], "statement_trips": (clearing["statement"] or {}).get("trips")}
        if got != want or extra != {"gate_records": want["taps"], "baseline": want["taps"],
                                    "statement_trips": want["trips"]}:
            problems.append({"operator": operator, "endpoints": {**got, **extra}, "sql": want})
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--taps", type=int, help="taps of the day (default 5000000; --quick 50000)")
    parser.add_argument("--gates", type=int, help="gates and bus readers (default 10000; --quick 400)")
    parser.add_argument("--reference-share", type=float, default=1.0,
                        help="size of the day a week before, as a share of --taps (default 1.0)")
    parser.add_argument("--rounds", type=int, help="warm calls of each endpoint (default 9; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="a small day, for trying and tests")
    parser.add_argument("--out", type=Path, help="also write the JSON document here")
    parser.add_argument("--seed", type=float, default=0.1207)
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    taps = args.taps if args.taps is not None else plan["taps"]
    gate_count = args.gates if args.gates is not None else plan["gates"]
    rounds = args.rounds if args.rounds is not None else plan["rounds"]
    if taps < 100 or gate_count < 8 or rounds < 1 or not 0 < args.reference_share <= 4:
        parser.error("--taps at least 100, --gates at least 8, --rounds at least 1, --reference-share in (0, 4]")
    started_all = time.perf_counter()
    doc: dict[str, Any] = {
        "benchmark": "citycode dashboards",
        "command": "python -m bench.dashboard " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    day = dt.date.fromisoformat(service_day(time.time())) - dt.timedelta(days=1)
    reference = day - dt.timedelta(days=7)
    with Environment(args.postgres, args.redis, None, 1) as env:
        assert env.services is not None
        services = env.services
        engine = services.db.engine
        with services.db.session() as session:
            add_operator(session, "xh-metro", "Xihai Metro", "metro", XH_METRO, DISCOUNTS)
            doc["machine"]["postgresql"] = session.execute(sa.text("SHOW server_version")).scalar()
            doc["machine"]["postgresql_settings"] = {
                name: session.execute(sa.text(f"SHOW {name}")).scalar()
                for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather")}
            devices = {o: add_api_client(session, f"gates of {o}", "device", operator=o)[0].id for o in SHARES}
            keys = {o: add_api_client(session, f"operator {o}", "operator", operator=o)[1] for o in SHARES}
            keys["auditor"] = add_api_client(session, "Data office", "auditor")[1]
        shares = {o: max(2, round(gate_count * s)) for o, s in SHARES.items()}
        gates = {o: gates_of(o, n) for o, n in shares.items()}
        # the secondary indexes are dropped for the load and built again after it (as a bulk load is done):
        # the same indexes, built in one pass instead of ten million inserts each
        indexes = secondary_indexes(engine)
        with engine.begin() as conn:
            for name, _definition in indexes:
                conn.execute(sa.text(f'DROP INDEX "{name}"'))
        generated = {"day": generate(engine, day, taps, gates, devices, args.seed),
                     "reference_day": generate(engine, reference, max(100, round(taps * args.reference_share)),
                                               gates, devices, -args.seed)}
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
            for _name, definition in indexes:
                conn.execute(sa.text(definition))
        index_s = time.perf_counter() - started
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE gate_records"))
        analyse_s = time.perf_counter() - started
        clearing: dict[str, Any] = {}
        for which, the_day in (("day", day), ("reference_day", reference)):
            per: dict[str, float] = {}
            for operator in SHARES:
                started = time.perf_counter()
                with services.db.session() as session:
                    run_clearing(session, operator, the_day)
                per[operator] = round(time.perf_counter() - started, 2)
            clearing[which] = {"seconds": per, "total_s": round(sum(per.values()), 2)}
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE trips"))
            conn.execute(sa.text("VACUUM ANALYZE gate_records"))
            sizes = {table: conn.execute(sa.text(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))"))
                     .scalar() for table in ("gate_records", "trips")}
        app = create_app(services.settings, services, initialise=False)
        operators = list(SHARES)
        timings, bodies = measure(app, services, day, keys, operators, rounds)
        counts = {o: sql_counts(engine, o, day) for o in operators}
    problems = check(bodies, counts)
    endpoints = {name: t for name, t in timings.items() if not name.startswith("baseline_count@")}
    doc.update({
        "service_day": day.isoformat(), "reference_day": reference.isoformat(),
        "taps": sum(generated["day"]["rows"].values()),
        "taps_reference_day": sum(generated["reference_day"]["rows"].values()),
        "gates": sum(shares.values()), "gates_by_operator": shares,
        "rows": {"day": generated["day"]["rows"], "reference_day": generated["reference_day"]["rows"],
                 "trips": {o: counts[o]["trips"] for o in operators}},
        "table_sizes": sizes,
        "generate_s": {k: v["seconds"] for k, v in generated.items()}, "vacuum_analyze_s": round(analyse_s, 1),
        "index_build_s": round(index_s, 1), "indexes_rebuilt": [name for name, _ in indexes],
        "clearing": clearing,
        "rounds": rounds,
        "baseline": {name.split("@", 1)[1]: t for name, t in timings.items() if name.startswith("baseline_count@")},
        "endpoints": endpoints,
        "slowest": max(endpoints, key=lambda n: endpoints[n]["median_ms"]),
        "all_within_300ms": all(t["within_300ms"] for t in endpoints.values()),
        "all_p95_within_300ms": all(t["p95_within_300ms"] for t in endpoints.values()),
        "counts": counts,
        "totals_match": not problems,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(time.perf_counter() - started_all, 1),
    })
    if problems:
        doc["problems"] = problems
    emit(doc, args.out)
    if problems:
        print("bench.dashboard: the endpoints' totals differ from the SQL counts", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
