"""The access log over HTTP, for the auditor: read the chain page by page and verify it.

(A resident reads their own entries through the consent domain's ``/me/access-log``, which first expires
overdue requests, as the history page does.)
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from codeservice.accesslog import service as accesslog
from codeservice.accesslog.models import AccessLogEntry
from codeservice.clients.auth import require_client
from codeservice.dashboard.counts import log_head, record_audit_run
from codeservice.jsonapi import query_arg
from codeservice.services import current_services

audit_api = Blueprint("audit_api", __name__, url_prefix="/api/v1")


# -- the auditor -----------------------------------------------------------------------------------

def _entry_json(entry: AccessLogEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "at": entry.at, "actor": entry.actor, "actor_label": entry.actor_label,
            "office": entry.office, "subject": entry.subject, "action": entry.action, "what": entry.what,
            "purpose": entry.purpose, "outcome": entry.outcome, "prev_hash": entry.prev_hash, "hash": entry.hash}


@audit_api.get("/audit/log")
@require_client("auditor")
def audit_log() -> Response:
    # Bounded by the document: limit 1 to 1000, after 0 to 2^31-1 (seq is a 32-bit column: nothing larger is
    # sent to the database).
    after, limit = query_arg("after"), query_arg("limit")
    with current_services().db.session() as db:
        rows = list(db.scalars(select(AccessLogEntry).where(AccessLogEntry.seq > after)
                               .order_by(AccessLogEntry.seq).limit(limit)))
        entries = [_entry_json(e) for e in rows]
    response = jsonify(entries=entries, next_after=entries[-1]["seq"] if len(entries) == limit else None)
    response.headers["Cache-Control"] = "no-store"
    return response


@audit_api.get("/audit/verify")
@require_client("auditor")
def audit_verify() -> Response:
    services = current_services()
    with services.db.session() as db:
        head = log_head(db)
        report = accesslog.verify_chain(db, services.audit_key)
        record_audit_run(db, report, head)  # kept for the data office's dashboard
    return jsonify(report.to_dict())

