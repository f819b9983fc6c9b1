"""Time ``citycode audit verify`` over a large access log, on SQLite and (if reachable) PostgreSQL.

    python -m bench.audit [--entries 1000000] [--postgres postgresql+psycopg://127.0.0.1:5432/test]

Builds a fresh data directory, fills the log with a valid hash chain (bulk insert, checkpoint every
1000 entries signed by the audit key), then runs the real command and prints one JSON document:
entries, seconds to fill, seconds for ``citycode audit verify``, entries verified per second, and a
baseline in the same run: seconds to recompute the same chain in memory (hashing only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from codeservice import accesslog
from codeservice.models import AccessLogEntry
from codeservice.services import AUDIT_OFFICE, Services
from tests.conftest import make_settings

CITYCODE = str(Path(sys.executable).with_name("citycode"))


def rows(n: int) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    out, marks, prev = [], [], accesslog.GENESIS
    for seq in range(1, n + 1):
        fields = {"seq": seq, "at": f"2026-11-23T08:{seq // 60 % 60:02d}:{seq % 60:02d}.000000Z",
                  "actor": f"clerk:{seq % 17}", "actor_label": "Window 3, Central Service Hall",
                  "office": "central-hall-w3", "subject": f"{seq % 100000:016d}", "action": "fetch",
                  "what": [{"type": "YYZZ", "fields": ["company_name"]}], "purpose": "food-licence renewal",
                  "outcome": "released"}
        chain_hash = accesslog.entry_hash(prev, fields)
        out.append({**fields, "prev_hash": prev, "hash": chain_hash})
        prev = chain_hash
        if seq % accesslog.CHECKPOINT_EVERY == 0:
            marks.append((seq, prev))
    return out, marks


def run_one(database_url: str | None, entries: list[dict[str, Any]], marks: list[tuple[int, str]]) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="citycode-bench-"))
    services = Services(make_settings(home, database_url, demo_data="false"))
    services.initialise()
    start = time.perf_counter()
    with services.db.engine.begin() as conn:
        for i in range(0, len(entries), 20000):
            conn.execute(sa.insert(AccessLogEntry), entries[i:i + 20000])
    with services.db.session() as session:
        signer = services.keyring.signer(AUDIT_OFFICE.id)
        for seq, chain_hash in marks:
            accesslog.checkpoint(session, signer, seq, chain_hash)
    filled = time.perf_counter() - start
    env = {**os.environ, "CITYCODE_HOME": str(home)}
    if database_url:
        env["CITYCODE_DATABASE_URL"] = database_url
    start = time.perf_counter()
    out = subprocess.run([CITYCODE, "audit", "verify"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    report = json.loads(out.stdout) if out.stdout.strip() else {"error": out.stderr[-300:]}
    services.db.dispose()
    return {"database": "postgresql" if database_url else "sqlite", "fill_s": round(filled, 1),
            "verify_s": round(seconds, 2), "verified_per_s": round(len(entries) / seconds),
            "exit_code": out.returncode, "report": report}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    args = parser.parse_args()
    start = time.perf_counter()
    entries, marks = rows(args.entries)
    baseline = time.perf_counter() - start
    results: dict[str, Any] = {"benchmark": "citycode audit verify", "command": "python -m bench.audit",
                               "entries": args.entries, "checkpoints": len(marks),
                               "baseline_rehash_in_memory_s": round(baseline, 2), "runs": []}
    results["runs"].append(run_one(None, entries, marks))
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"citycode_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        results["postgresql"] = f"unreachable: {exc.__class__.__name__}"
    else:
        try:
            results["runs"].append(run_one(args.postgres.rsplit("/", 1)[0] + "/" + name, entries, marks))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
