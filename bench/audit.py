"""Time ``citycode audit verify`` over a large access log, on SQLite and (if reachable) PostgreSQL.

    python -m bench.audit [--entries 1000000] [--postgres postgresql+psycopg://127.0.0.1:5432/test]

Self-contained (imports the service, not the tests). For each database it builds a fresh data directory
(``citycode`` keys, no demo data), fills the log with a valid hash chain (bulk insert in batches of
20,000, a checkpoint every ``accesslog.CHECKPOINT_EVERY`` entries signed by the audit key), then runs the
real command ``citycode audit verify`` in a subprocess and prints one JSON document: entries, seconds to
fill, seconds for the command (process start included), entries verified per second, the command's own
report, the command's peak resident memory (its own ``ru_maxrss``, from ``os.wait4`` in a small launcher), and
two baselines in the same run: seconds to compute the same chain in memory (hashing only), and seconds and
peak memory for ``citycode --help`` (starting the command, nothing verified).
The PostgreSQL database is created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from codeservice.accesslog import service as accesslog
from codeservice.accesslog.models import AccessLogEntry
from codeservice.config import Settings
from codeservice.services import AUDIT_OFFICE, Services

CITYCODE = str(Path(sys.executable).with_name("citycode"))
BATCH = 20_000


def chain(n: int) -> Iterator[list[dict[str, Any]]]:
    """The same valid chain of *n* entries every time, in batches (never the whole log in memory)."""
    prev = accesslog.GENESIS
    batch: list[dict[str, Any]] = []
    for seq in range(1, n + 1):
        fields = {"seq": seq, "at": f"2026-11-23T08:{seq // 60 % 60:02d}:{seq % 60:02d}.000000Z",
                  "actor": f"clerk:{seq % 17}", "actor_label": "Window 3, Central Service Hall",
                  "office": "central-hall-w3", "subject": f"{seq % 100000:016d}", "action": "fetch",
                  "what": [{"type": "YYZZ", "fields": ["company_name"]}], "purpose": "food-licence renewal",
                  "outcome": "released"}
        chain_hash = accesslog.entry_hash(prev, fields)
        batch.append({**fields, "prev_hash": prev, "hash": chain_hash})
        prev = chain_hash
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


#: Runs its arguments and writes their exit code, wall seconds and peak memory to the file named first. A small
#: process of its own: a child's ``ru_maxrss`` counts the memory of the process it was forked from (Linux carries
#: the old image's high-water mark across ``exec``), so measured straight from this benchmark, which holds the
#: service's imports and a batch of the chain, even ``citycode --help`` would seem to take 130 MB.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
with open(sys.argv[1], "w") as out:
    json.dump({"exit_code": child.returncode, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}, out)
"""


def run_command(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str, float, float]:
    """Run *args*; its exit code, stdout, stderr, wall seconds (process start included) and peak resident
    memory in MB: its own ``ru_maxrss`` from ``os.wait4`` in a small launcher (see ``LAUNCHER``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as figures:
        subprocess.run([sys.executable, "-c", LAUNCHER, figures.name, *args], env=env, stdout=out, stderr=err,
                       check=True)
        measured = json.loads(Path(figures.name).read_text())
        out.seek(0)
        err.seek(0)
        return (measured["exit_code"], out.read().decode(), err.read().decode(), measured["seconds"],
                measured["peak_rss_mb"])


def settings_env(home: Path, database_url: str | None) -> dict[str, str]:
    env = {"CITYCODE_HOME": str(home), "CITYCODE_DEMO_DATA": "false"}
    if database_url:
        env["CITYCODE_DATABASE_URL"] = database_url
    return env


def run_one(database_url: str | None, n: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="citycode-bench-"))
    env = settings_env(home, database_url)
    services = Services(Settings.from_env(env))
    services.initialise()
    signer = services.keyring.signer(AUDIT_OFFICE.id)
    start = time.perf_counter()
    marks = 0
    for batch in chain(n):
        with services.db.engine.begin() as conn:
            conn.execute(sa.insert(AccessLogEntry), batch)
        with services.db.session() as session:
            for row in batch:
                if row["seq"] % accesslog.CHECKPOINT_EVERY == 0:
                    accesslog.checkpoint(session, signer, row["seq"], row["hash"])
                    marks += 1
    filled = time.perf_counter() - start
    with services.db.engine.connect() as conn:
        server = conn.execute(sa.text("select version()")).scalar() if database_url else \
            f"SQLite {sqlite3.sqlite_version}"
    code, stdout, stderr, seconds, peak_mb = run_command([CITYCODE, "audit", "verify"], {**os.environ, **env})
    report = json.loads(stdout) if stdout.strip() else {"error": stderr[-300:]}
    services.db.dispose()
    shutil.rmtree(home, ignore_errors=True)  # the SQLite file of a million entries is some 400 MB
    return {"database": "postgresql" if database_url else "sqlite", "server": str(server).split(",")[0],
            "checkpoints": marks, "fill_s": round(filled, 1), "verify_s": round(seconds, 2),
            "verified_per_s": round(n / seconds), "verify_peak_rss_mb": round(peak_mb, 1), "exit_code": code,
            "report": report}


def psycopg_version() -> str | None:
    try:
        return metadata.version("psycopg")
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    for _batch in chain(args.entries):
        pass
    baseline = time.perf_counter() - start
    code, _out, _err, launch, launch_mb = run_command([CITYCODE, "--help"])
    if code != 0:
        raise SystemExit(f"citycode --help exited with {code}")
    results: dict[str, Any] = {
        "benchmark": "citycode audit verify", "command": "python -m bench.audit",
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "entries": args.entries,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                    "sqlite": sqlite3.sqlite_version, "sqlalchemy": sa.__version__, "psycopg": psycopg_version()},
        "baseline_rehash_in_memory_s": round(baseline, 2), "citycode_help_s": round(launch, 2),
        "citycode_help_peak_rss_mb": round(launch_mb, 1), "runs": [],
    }
    results["runs"].append(run_one(None, args.entries))
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"citycode_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        results["postgresql"] = f"unreachable: {exc.__class__.__name__}"
    else:
        try:
            results["runs"].append(run_one(args.postgres.rsplit("/", 1)[0] + "/" + name, args.entries))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    results["duration_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
