"""The identity code over HTTP: verify, scenes, the trust list and its anchor, the resident's own code,
health and the API description (codeservice/openapi.json, served at /api/v1/openapi.json)."""

from __future__ import annotations

import base64
import dataclasses
import time

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import text

from codeservice import contract
from codeservice.accesslog.ratelimit import limit_verifier
from codeservice.clients.auth import require_client
from codeservice.clients.models import ApiClient
from codeservice.clients.service import client_by_key
from codeservice.dashboard.counts import SHOW, count_certificate_use
from codeservice.identity.residents import get_resident
from codeservice.identity.session import signed_in_resident
from codeservice.jsonapi import UNPROCESSABLE, BadRequest, json_object
from codeservice.services import current_services
from issuers import render
from sdk import Reason, Result
from verifiers.scenes import SCENES, UnknownSceneError

api = Blueprint("api", __name__, url_prefix="/api/v1")

OPENAPI = contract.OPENAPI  # the one contract: served as it is, and what every request is checked against


def _optional_verifier() -> ApiClient | None:
    """None for an anonymous caller; else the verifier whose key ``Authorization: Bearer`` carries (401 for a key
    that is not one, 403 for another role's: a caller that names itself is never quietly taken for anonymous)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, key = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="citycode"'}
    if scheme.lower() != "bearer" or not key.strip():
        raise BadRequest("unauthorised", "send Authorization: Bearer <API key>, or no Authorization", 401, challenge)
    with current_services().db.session() as session:
        client = client_by_key(session, key.strip())
        if client is None:
            raise BadRequest("unauthorised", "unknown or disabled API key", 401, challenge)
        if client.role != "verifier":
            raise BadRequest("forbidden", "this endpoint takes a verifier key, or none", 403)
        session.expunge(client)
    return client


@api.post("/verify")
def verify() -> tuple[Response, int]:
    """Anyone learns whether a code is accepted and why not (``{accepted, reason}``); a verifier's key, within
    its allowance a minute, gets the whole result (whom the code names, its fields)."""
    verifier = _optional_verifier()
    if verifier is not None:
        limit_verifier(verifier)
    contract.check_request()  # after the credential, as for every operation with a security requirement
    body = json_object()  # VerifyRequest: a string code, a scene that is a string or null, nothing else
    code = body["code"]
    scene = body.get("scene")
    id_checked = body.get("id_card_checked", False)  # a clerk checked the identity card (printed cards)
    services = current_services()

    def not_frozen(passed: Result) -> Result | None:
        # Online, a frozen identity (lost phone) is refused at once, before a single-use scene spends
        # the code; offline gates rely on the code's one-minute life, since a frozen resident gets no new one.
        if passed.kind != "id" or passed.subject is None:
            return None
        if passed.home_city is not None:  # a visitor: residents of a federated city are their city's to freeze,
            return None  # and reach us only through the code's one-minute life (docs/federation.md)
        with services.db.session() as session:
            resident = get_resident(session, passed.subject)
            if resident is not None and not resident.frozen:
                return None
        detail = "identity frozen" if resident is not None else "no such resident"
        return dataclasses.replace(passed, accepted=False, reason=Reason.SUSPENDED, detail=detail)

    try:
        result = services.online.verify(code, scene, before_use=not_frozen, id_checked=id_checked)
    except UnknownSceneError:
        raise BadRequest("unknown_scene", f"no scene named {scene!r}; see /api/v1/scenes", UNPROCESSABLE) from None
    status = 503 if result.reason is Reason.REPLAY_GUARD_UNAVAILABLE else 200
    if result.accepted and result.kind == "cert" and result.issuer is not None and result.home_city is None:
        # a certificate shown (亮证) and verified online: counted for the data office, by issuing department only
        with services.db.session() as session:
            count_certificate_use(session, result.issuer, SHOW)
    if verifier is None:  # never whom the code names, nor any field: accepted or not, and why
        return jsonify(accepted=result.accepted, reason=result.reason.value), status
    return jsonify(result.to_dict()), status


@api.get("/scenes")
def scenes() -> Response:
    return jsonify(scenes=[s.to_dict() for s in SCENES.values()])


@api.get("/trust-list")
def trust_list() -> Response:
    token = current_services().trust_list_token()
    response = Response(token, mimetype="application/trustlist+jwt")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@api.get("/trust-anchor")
def trust_anchor() -> Response:
    return Response(current_services().keyring.anchor_public_pem(), mimetype="application/x-pem-file")


@api.get("/me/code")
def my_code() -> tuple[Response, int]:
    services = current_services()
    with services.db.session() as db:
        pid = signed_in_resident(db)
    now = time.time()
    code = services.issue_identity_code(pid, now=now)
    lifetime = services.settings.code_lifetime
    margin = min(10, max(1, lifetime // 4))
    svg = render.svg(code)
    response = jsonify(
        code=code,
        issued_at=int(now),
        expires_at=int(now) + lifetime,
        refresh_in=lifetime - margin,
        svg="data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode(),
    )
    response.headers["Cache-Control"] = "no-store"
    return response, 200


@api.get("/health")
def health() -> tuple[Response, int]:
    services = current_services()
    try:
        with services.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = True
    except Exception:
        database = False
    state = services.state.ping()
    ok = database and state
    return jsonify(status="ok" if ok else "degraded", database=database, state=state), 200 if ok else 503


@api.get("/openapi.json")
def openapi() -> Response:
    return Response(OPENAPI.read_bytes(), mimetype="application/json")


# -- residents ---------------------------------------------------------------------------------------
def _set_frozen(pid: str, frozen: bool) -> Response:
    with current_services().db.session() as session:
        resident = get_resident(session, pid)
        if resident is None:
            raise BadRequest("not_found", f"no resident {pid!r}", 404)
        resident.frozen = frozen
        return jsonify(id=resident.pid, frozen=resident.frozen)


@api.post("/admin/residents/<pid>/freeze")
@require_client("admin")
def freeze_resident(pid: str) -> Response:
    """A lost phone: the resident gets no new identity code, and online checks refuse the ones in circulation."""
    return _set_frozen(pid, True)


@api.post("/admin/residents/<pid>/unfreeze")
@require_client("admin")
def unfreeze_resident(pid: str) -> Response:
    return _set_frozen(pid, False)
