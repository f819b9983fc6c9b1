"""API clients: roles, keys (only their hash is kept) and the look-up of a key's client.

A client may belong to an office or to an operator and may ask about certificate types. Those belong to
domains above this one: their rows are looked up through the tables named by this table's references,
not by importing the domains.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from codeservice.clients.models import ApiClient
from codeservice.errors import NotFound, Refused
from codeservice.models import Base


class ClientError(Refused):
    """A client that cannot be made as asked; the message says why."""


class UnknownReference(ClientError, NotFound):
    """The office, operator or certificate type a client would belong to does not exist."""


def _exists(session: Session, table_name: str, key: str) -> bool:
    table = Base.metadata.tables[table_name]  # every domain's tables are on it (codeservice.tables)
    (column,) = table.primary_key.columns
    return session.execute(select(literal(1)).select_from(table).where(column == key)).first() is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


ROLES = ("admin", "verifier", "clerk", "device", "auditor", "operator")


def add_api_client(
    session: Session, name: str, role: str, types: Iterable[str] = (), predicates: Iterable[str] = (),
    *, office: str | None = None, rate_per_minute: int = 60, operator: str | None = None,
) -> tuple[ApiClient, str]:
    """Create a client; the key is returned once and only its hash is kept.

    Clerks belong to an office (whose purposes and certificate types bound them); a device to an office
    (a queue kiosk) or to a transport or scenic-site operator (a gate); operator staff to their operator.
    """
    if role not in ROLES:
        raise ClientError(f"role must be one of {', '.join(ROLES)}")
    if role == "device":
        if (office is None) == (operator is None):
            raise ClientError("a device belongs to an office (a kiosk) or to an operator (a gate)")
    elif (role == "clerk") != (office is not None) or (role == "operator") != (operator is not None):
        raise ClientError("clerks belong to an office, operator staff to an operator, other clients to neither")
    if office is not None and not _exists(session, "offices", office):
        raise UnknownReference(f"no office {office!r}")
    if operator is not None and not _exists(session, "operators", operator):
        raise UnknownReference(f"no operator {operator!r}")
    if type(rate_per_minute) is not int or not 1 <= rate_per_minute <= 100_000:
        raise ClientError("rate per minute: 1 to 100000")
    if not name or len(name) > 200:
        raise ClientError("client name: 1 to 200 characters")
    types, predicates = list(types), list(predicates)
    for code in types:
        if not _exists(session, "cert_types", code):
            raise UnknownReference(f"no certificate type {code!r}")
    key = f"cc_{role[0]}_{secrets.token_urlsafe(32)}"
    client = ApiClient(name=name, role=role, key_hash=hash_key(key), allowed_types=types,
                       allowed_predicates=predicates, active=True, office_id=office, rate_per_minute=rate_per_minute,
                       operator_id=operator)
    session.add(client)
    session.flush()
    return client, key


def client_by_key(session: Session, key: str) -> ApiClient | None:
    client = session.scalars(select(ApiClient).where(ApiClient.key_hash == hash_key(key))).first()
    return client if client is not None and client.active else None

