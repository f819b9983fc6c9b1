"""Demo data for the embedded default: departments, certificate types and certificates, the demo office and
operators, and (for ``scripts/serve``) figures for the data office's dashboard."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codeservice.accesslog.service import verify_chain
from codeservice.certificates.models import CertType, Department
from codeservice.certificates.service import add_cert_type, add_department, certificates_of, issue_certificate
from codeservice.clients.models import ApiClient
from codeservice.clients.service import add_api_client
from codeservice.consent.models import Office
from codeservice.consent.service import add_office
from codeservice.dashboard import counts
from codeservice.identity.models import Resident
from codeservice.transit.models import Operator, TransitAccount
from codeservice.transit.service import add_operator, ensure_account
from codeservice.venues.models import PointRecord, Service
from codeservice.venues.points import add_point, add_service
from issuers.keyring import Keyring
from sdk.certid import uscc_check
from sdk.citytime import CITY_TZ, city_today
from sdk.keys import PublicKey


def _uscc(first17: str) -> str:
    return first17 + uscc_check(first17)


DEMO_COMPANY = _uscc("91370200MA3C8N2K1")  # Harbour Noodle House Co., Ltd.

DEPARTMENTS = [
    ("civil-affairs", "City Civil Affairs Bureau", _uscc("11370200004512345")),
    ("disabled-federation", "City Disabled Persons' Federation", _uscc("51370200004523456")),
    ("market-regulation", "City Market Regulation Bureau", _uscc("11370200004534567")),
]

TYPES = [
    dict(code="LNYD", name="Elderly preferential card (老年优待证)", department="civil-affairs", holder_kind="resident",
         validity_days=3650,
         fields=[{"name": "name", "label": "Name", "type": "text"},
                 {"name": "birth_date", "label": "Date of birth", "type": "date"},
                 {"name": "gender", "label": "Gender", "type": "text"}],
         predicates=[{"field": "birth_date", "op": "age_over", "value": 60, "label": "60 or older"},
                     {"field": "birth_date", "op": "age_over", "value": 65, "label": "65 or older"},
                     {"field": "birth_date", "op": "age_over", "value": 70, "label": "70 or older"}]),
    dict(code="CJRZ", name="Disability certificate (残疾人证)", department="disabled-federation",
         holder_kind="resident", validity_days=3650,
         fields=[{"name": "name", "label": "Name", "type": "text"},
                 {"name": "birth_date", "label": "Date of birth", "type": "date"},
                 {"name": "category", "label": "Category", "type": "text"},
                 {"name": "grade", "label": "Grade", "type": "int"}],
         predicates=[{"field": "birth_date", "op": "age_over", "value": 18, "label": "adult"}]),
    dict(code="YYZZ", name="Business licence (营业执照)", department="market-regulation", holder_kind="company",
         validity_days=3650,
         fields=[{"name": "company_name", "label": "Company name", "type": "text"},
                 {"name": "legal_representative", "label": "Legal representative", "type": "text"},
                 {"name": "registered_capital_cny", "label": "Registered capital (CNY)", "type": "int"},
                 {"name": "business_scope", "label": "Business scope", "type": "text"},
                 {"name": "address", "label": "Address", "type": "text"}]),
    dict(code="SPJY", name="Food operation licence (食品经营许可证)", department="market-regulation",
         holder_kind="company", validity_days=1825,
         fields=[{"name": "company_name", "label": "Operator", "type": "text"},
                 {"name": "operating_items", "label": "Operating items", "type": "text"},
                 {"name": "address", "label": "Premises", "type": "text"},
                 {"name": "catering", "label": "Catering service", "type": "bool"}]),
]


def ensure_demo_certificates(session: Session, keyring: Keyring, residents: list[Resident], list_size: int) -> None:
    """Create the demo departments, types and certificates where missing (idempotent)."""
    for dept_id, name, org in DEPARTMENTS:
        if session.get(Department, dept_id) is None:
            add_department(session, keyring, dept_id, name, org)
    for spec in TYPES:
        if session.get(CertType, spec["code"]) is None:
            add_cert_type(session, keyring, **spec)  # type: ignore[arg-type]
    elder, adult = residents[0], residents[1]

    def issue(type_code: str, holder: str, fields: dict[str, object]) -> None:
        if not any(c.type_code == type_code for c in certificates_of(session, holder)):
            issue_certificate(session, type_code=type_code, holder=holder, fields=fields, status_list_size=list_size)

    assert elder.birth_date is not None and adult.birth_date is not None
    issue("LNYD", elder.pid, {"name": elder.display_name, "birth_date": elder.birth_date.isoformat(),
                              "gender": "male"})
    issue("CJRZ", adult.pid, {"name": adult.display_name, "birth_date": adult.birth_date.isoformat(),
                              "category": "hearing", "grade": 3})
    issue("YYZZ", DEMO_COMPANY, {"company_name": "Harbour Noodle House Co., Ltd.", "legal_representative": "Wang Fang",
                                 "registered_capital_cny": 500000, "business_scope": "Catering; retail of food",
                                 "address": "18 Zhongshan Road, Shinan District"})
    issue("SPJY", DEMO_COMPANY, {"company_name": "Harbour Noodle House Co., Ltd.",
                                 "operating_items": "Hot and cold meals; noodles", "catering": True,
                                 "address": "18 Zhongshan Road, Shinan District"})


DEMO_OFFICE = "central-hall-w3"

#: What each of the demo window's purposes may ask for: only what the purpose needs (a food-licence renewal
#: needs the business and food licences, not the elderly card; an elderly allowance, age and name, not gender).
DEMO_PURPOSE_ASKS: dict[str, list[dict[str, object]]] = {
    "food-licence renewal": [
        {"type": "YYZZ", "fields": ["company_name", "legal_representative", "address"]},
        {"type": "SPJY", "fields": ["company_name", "operating_items", "address", "catering"]},
    ],
    "elderly allowance application": [
        {"type": "LNYD", "fields": ["name", "birth_date", "age_over_60", "age_over_65", "age_over_70"]},
    ],
    "disability subsidy application": [
        {"type": "CJRZ", "fields": ["name", "category", "grade", "age_over_18"]},
    ],
}


def ensure_demo_office(session: Session) -> None:
    """A service-hall window with two clerks, and a queue kiosk (their keys are not kept: in the
    embedded default, clerks use the development sign-in of the console)."""
    from sqlalchemy import select


    if session.get(Office, DEMO_OFFICE) is None:
        add_office(session, DEMO_OFFICE, "Window 3, Central Service Hall",
                   purposes=list(DEMO_PURPOSE_ASKS), cert_types=["YYZZ", "SPJY", "LNYD", "CJRZ"],
                   services=["business", "social-security"], asks=DEMO_PURPOSE_ASKS)
    existing = set(session.scalars(select(ApiClient.name).where(ApiClient.office_id == DEMO_OFFICE)))
    for name, role in (("Clerk Zhou", "clerk"), ("Clerk Sun", "clerk"), ("Queue kiosk 1", "device")):
        if name not in existing:
            add_api_client(session, name, role, office=DEMO_OFFICE)


DEMO_OPERATORS: list[dict[str, object]] = [
    dict(id="qd-metro", name="Qingdao Metro", kind="metro",
         fares={"lines": {"1": [["101", 0], ["102", 1400], ["103", 2600], ["104", 4300], ["105", 6100],
                                ["106", 8000], ["107", 9700], ["108", 12000]],
                          "2": [["201", 0], ["202", 1500], ["104", 3100], ["204", 4800], ["205", 6900],
                                ["206", 9300]]},
                "bands": [[4000, 200], [9000, 300], [16000, 400], [24000, 500]], "max_fare": 700},
         discounts={"adult": 100, "student": 50, "elderly": 0, "disabled": 0}),
    dict(id="qd-bus", name="Qingdao Bus Group", kind="bus",
         fares={"lines": {"1": 200, "11": 100, "26": 200, "301": 300}, "default": 200},
         discounts={"adult": 100, "student": 50, "elderly": 0, "disabled": 0}),
    dict(id="laoshan", name="Laoshan Scenic Area", kind="scenic",
         fares={"sites": {"taiqing": {"price": 9000, "capacity": 20000},
                          "jufeng": {"price": 6500, "capacity": 8000}}},
         discounts={"adult": 100, "student": 50, "elderly": 0, "disabled": 0}),
]


def ensure_demo_transit(session: Session, residents: list[Resident], *, fare_limit: int) -> None:
    """Three operators (metro, bus, scenic site) and transit accounts for the demo residents: the elder's
    card is elderly by age, the youngest's a student card (idempotent)."""

    for spec in DEMO_OPERATORS:
        if session.get(Operator, str(spec["id"])) is None:
            add_operator(session, str(spec["id"]), str(spec["name"]), str(spec["kind"]), spec["fares"],
                         spec["discounts"])
    from sqlalchemy import select


    today = city_today()
    had = set(session.scalars(select(TransitAccount.resident)))
    for resident in residents:
        account = ensure_account(session, resident.pid, fare_limit=fare_limit, today=today)
        if resident is residents[-1] and resident.pid not in had:
            account.card_type = "student"


#: The demo's service with a quota (扫码吸氧) and its two points, for the city dashboard's service-point panel.
DEMO_SERVICE = ("yushu-oxygen", "免费吸氧", 2)
DEMO_POINTS = [("gesar-square", "格萨尔广场吸氧点"), ("prefecture-hospital", "州医院吸氧点")]
#: Demo certificate uses a city day, oldest first, over the dashboard's seven days: (department, kind, counts).
DEMO_USES = [("civil-affairs", "show", [3, 5, 2, 4, 6, 1, 3]), ("civil-affairs", "pull", [1, 0, 2, 1, 0, 1, 1]),
             ("market-regulation", "show", [2, 1, 0, 3, 2, 2, 4]), ("market-regulation", "pull", [0, 1, 0, 0, 1, 0, 1])]
#: Demo uses of the service today: (point, city hour, resident index), the elder over the quota once.
DEMO_POINT_USES = [("gesar-square", 9, 0), ("gesar-square", 9, 1), ("gesar-square", 10, 2),
                   ("prefecture-hospital", 10, 0), ("prefecture-hospital", 15, 1), ("prefecture-hospital", 16, 0)]


def ensure_demo_figures(session: Session, residents: list[Resident],
                        audit_key: Callable[[str], PublicKey | None], now: float | None = None) -> dict[str, int]:
    """Something for each of the data office's newer panels on ``scripts/serve`` (``citycode init`` calls this
    with demo data on; the test apps do not): certificate shows and pulls over the last seven days, one real run
    of the access log's audit, and the demo service's two points with a few uses today (offline records, the
    elder over the quota once). Each part only where it has nothing yet (idempotent)."""
    now = time.time() if now is None else now
    made = {"certificate_uses": 0, "audit_runs": 0, "point_uses": 0}
    today = dt.datetime.fromtimestamp(now, CITY_TZ).date()
    if session.scalar(select(func.count()).select_from(counts.CertificateUseCount)) == 0:
        for department, kind, per_day in DEMO_USES:
            for back, n in enumerate(reversed(per_day)):
                counts.count_certificate_use(session, department, kind, now - back * 86400, n)
                made["certificate_uses"] += n
    if session.scalar(select(func.count()).select_from(counts.AuditRun)) == 0:
        head = counts.log_head(session)
        counts.record_audit_run(session, verify_chain(session, audit_key), head, now)
        made["audit_runs"] = 1
    service_id, name, quota = DEMO_SERVICE
    if session.get(Service, service_id) is None:
        add_service(session, service_id, name, quota)
        for point_id, point_name in DEMO_POINTS:
            add_point(session, service_id, point_id, point_name)  # no key kept: the demo's uses are recorded here
        for point_id, hour, who in DEMO_POINT_USES:
            at = dt.datetime.combine(today, dt.time(hour, 5 * (made["point_uses"] + 1)), CITY_TZ)
            session.add(PointRecord(record_id=secrets.token_hex(16), point_id=point_id, service_id=service_id,
                                    resident=residents[who % len(residents)].pid, at=at.astimezone(dt.UTC),
                                    day=today, hour=hour, accepted=True, online=False, note=None))
            made["point_uses"] += 1
        session.flush()
    return made
