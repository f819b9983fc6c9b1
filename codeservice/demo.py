"""Demo data for the embedded default: departments, certificate types and certificates."""

from __future__ import annotations

from sqlalchemy.orm import Session

from codeservice.certificates import add_cert_type, add_department, certificates_of, issue_certificate
from codeservice.models import CertType, Department, Resident
from issuers.keyring import Keyring
from sdk.certid import uscc_check


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


def ensure_demo_office(session: Session) -> None:
    """A service-hall window with two clerks, and a queue kiosk (their keys are not kept: in the
    embedded default, clerks use the development sign-in of the console)."""
    from sqlalchemy import select

    from codeservice.certificates import add_api_client
    from codeservice.consent import add_office
    from codeservice.models import ApiClient, Office

    if session.get(Office, DEMO_OFFICE) is None:
        add_office(session, DEMO_OFFICE, "Window 3, Central Service Hall",
                   purposes=["food-licence renewal", "elderly allowance application",
                             "disability subsidy application"],
                   cert_types=["YYZZ", "SPJY", "LNYD", "CJRZ"], services=["business", "social-security"])
    existing = set(session.scalars(select(ApiClient.name).where(ApiClient.office_id == DEMO_OFFICE)))
    for name, role in (("Clerk Zhou", "clerk"), ("Clerk Sun", "clerk"), ("Queue kiosk 1", "device")):
        if name not in existing:
            add_api_client(session, name, role, office=DEMO_OFFICE)
