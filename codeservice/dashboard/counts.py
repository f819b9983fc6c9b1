"""What the dashboards count as it happens, because nothing else keeps it (migration 0016):

- ``certificate_use_counts``: certificate shows (亮证) verified online through ``POST /api/v1/verify`` and
  certificates a clerk fetched with the resident's consent, per city date, issuing department and kind
  (``show``, ``pull``). Counts only: no pid, no certificate id, no verifier. An online verification writes no
  row anywhere else (its replay guard lives in the state store), and a fetch's access-log entry names the
  certificate types only inside its JSON ``what`` with its time as text; one upserted row per (day,
  department, kind) is what the city-day figure reads instead of unpacking the log's JSON per dialect.
- ``audit_runs``: every run of the access log's audit (``citycode audit verify``, ``GET /api/v1/audit/verify``)
  with its outcome.

This module imports only the shared ``Base`` and the access log, so that the call sites that record
(identity, consent, accesslog) can import it without an import circle through the dashboards' figures.
"""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import Boolean, Date, DateTime, Integer, String, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from codeservice.accesslog.models import AccessLogEntry
from codeservice.accesslog.service import AuditReport
from codeservice.models import Base
from sdk.citytime import CITY_TZ

#: The kinds of certificate use counted.
SHOW, PULL = "show", "pull"
USE_KINDS = (SHOW, PULL)
#: An audit run's reason is cut to this length (the report's own messages are well within it).
REASON_LENGTH = 300


class CertificateUseCount(Base):
    """How many certificates of a department were shown (verified online) or pulled (fetched by a clerk with
    consent) on a city date."""

    __tablename__ = "certificate_use_counts"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    #: The issuing department (the certificate's issuer); no foreign key: a count never refuses a verification.
    department_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # show | pull
    n: Mapped[int] = mapped_column(Integer, nullable=False)


class AuditRun(Base):
    """One run of the access log's audit and its outcome."""

    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    entries_checked: Mapped[int] = mapped_column(Integer, nullable=False)
    #: The newest entry of the log when the run started: what the run covered (0 for an empty log).
    last_seq: Mapped[int] = mapped_column(Integer, nullable=False)
    #: Why the run failed (the first altered, missing or misplaced entry); null when it passed.
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))


def city_date(at: float) -> dt.date:
    """The city's calendar date of a moment (the days the data office's figures are in)."""
    return dt.datetime.fromtimestamp(at, CITY_TZ).date()


def count_certificate_use(session: Session, department_id: str, kind: str, now: float | None = None,
                          n: int = 1) -> None:
    """Add *n* to the department's count of *kind* for the city date of *now*, in the caller's transaction
    (one upsert: concurrent callers add up, never overwrite)."""
    if kind not in USE_KINDS:
        raise ValueError(f"kind: one of {', '.join(USE_KINDS)}")
    if n <= 0:
        return
    day = city_date(time.time() if now is None else now)
    values = {"day": day, "department_id": department_id[:64], "kind": kind, "n": n}
    keys = ["day", "department_id", "kind"]
    if session.get_bind().dialect.name == "postgresql":
        pg = pg_insert(CertificateUseCount).values(**values)
        session.execute(pg.on_conflict_do_update(index_elements=keys,
                                                 set_={"n": CertificateUseCount.n + pg.excluded.n}))
    else:
        lite = sqlite_insert(CertificateUseCount).values(**values)
        session.execute(lite.on_conflict_do_update(index_elements=keys,
                                                   set_={"n": CertificateUseCount.n + lite.excluded.n}))


def log_head(session: Session) -> int:
    """The newest entry's ``seq`` (0 for an empty log)."""
    return int(session.scalar(select(func.max(AccessLogEntry.seq))) or 0)


def record_audit_run(session: Session, report: AuditReport, last_seq: int, now: float | None = None) -> AuditRun:
    """Keep an audit run's outcome, in the caller's transaction; *last_seq* is the log's head when the run began
    (:func:`log_head`)."""
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    run = AuditRun(at=moment, ok=bool(report.ok), entries_checked=int(report.entries), last_seq=int(last_seq),
                   reason=None if report.ok else (str(report.problem) or "failed")[:REASON_LENGTH])
    session.add(run)
    session.flush()
    return run
