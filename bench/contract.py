"""What checking a request against codeservice/openapi.json costs, by library: ``python -m bench.contract [--quick]``.

Prints one JSON document. For two typical bodies (POST /api/v1/consent/requests, a ConsentRequestCreate of
three items; POST /api/v1/admin/cert-types, a CertTypeRequest of four fields and a predicate) it times, per
body, interleaved round by round (bench/run.py's helpers):

* ``json_loads``: ``json.loads`` of the same bytes, the baseline every check pays anyway;
* ``jsonschema``: jsonschema's Draft 2020-12 validator (pure Python), made once from the schema with the
  document's components beside it (so that ``#/components/...`` resolves), format checking on: the first of
  ``iter_errors`` of a valid body (none);
* ``jsonschema_rs``: jsonschema-rs (Rust), the validator codeservice/contract.py uses (every subschema of the
  document compiled once into a map), ``validate_formats`` on: the first of ``iter_errors`` (none);
* ``openapi_core``: openapi-core's ``OpenAPI.validate_request`` of the whole request (security, path, query and
  body) as a Werkzeug request, made once, the document loaded once;
* ``request_context``: making a Flask test request context of the same request and leaving it (the baseline
  of the next: a real request has its context anyway);
* ``contract``: the whole check of codeservice/contract.py inside such a context (finding the operation, parsing
  the body with its whole numbers, validating it, the NUL check); ``contract`` minus ``request_context`` is what an API
  request pays for its check.

It also reports, for each library, whether it accepts the valid bodies and refuses a set of invalid ones the
document refuses (the answer expected of a correct OpenAPI 3.1 validator), and the message it gives for one of
them. fastjsonschema is tried too: it compiles drafts 4, 6 and 7 only, so the document's 2020-12 schemas
(``prefixItems``, ``$ref`` beside other keywords, ``if``/``then``) are reported as it handles them.
Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from bench.run import emit, interleaved, ratio, summary
from codeservice.contract import OPENAPI, Contract, check_request, find_operation

CONSENT = {
    "code": "CC1:RRQT 9O60GO0B7CB0" + "A" * 180, "purpose": "elderly allowance application",
    "items": [{"type": "LNYD", "fields": ["name", "age_over_60"]},
              {"type": "CJRZ", "fields": ["name", "category", "grade"]},
              {"type": "JZZ", "fields": ["name", "address", "valid_until", "birth_date"]}],
    "keep_minutes": 30,
}
CERT_TYPE = {
    "code": "JZZB", "name": "Residence permit", "department": "civil-affairs", "holder_kind": "resident",
    "fields": [{"name": "name", "label": "Name"}, {"name": "birth_date", "label": "Birth date", "type": "date",
               "disclosable": False}, {"name": "address", "label": "Address"},
               {"name": "grade", "type": "int"}],
    "predicates": [{"field": "birth_date", "op": "age_over", "value": 18}], "validity_days": 365,
}
BODIES = {"consent_request": ("/api/v1/consent/requests", "ConsentRequestCreate", CONSENT),
          "cert_type": ("/api/v1/admin/cert-types", "CertTypeRequest", CERT_TYPE)}
#: Bodies the document refuses, each with why.
INVALID = {
    "consent_request": [
        ({**CONSENT, "keep_minutes": 0}, "keep_minutes below its minimum"),
        ({**CONSENT, "items": []}, "no items (minItems)"),
        ({**CONSENT, "extra": 1}, "an unknown member (additionalProperties false)"),
        ({**CONSENT, "purpose": "   "}, "a purpose of white space only (pattern \\S)"),
        ({k: v for k, v in CONSENT.items() if k != "code"}, "code missing (required)"),
    ],
    "cert_type": [
        ({**CERT_TYPE, "code": "jzzb"}, "a type code not of its pattern"),
        ({**CERT_TYPE, "validity_days": 1.5}, "a fraction where an integer is due"),
        ({**CERT_TYPE, "fields": []}, "no fields (minItems in an allOf)"),
        ({**CERT_TYPE, "holder_kind": "pet"}, "a holder kind outside its enum"),
        ({**CERT_TYPE, "fields": [{"name": "name", "type": "float"}]}, "a field type outside its enum, via $ref"),
    ],
}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("jsonschema", "jsonschema-rs", "openapi-core", "fastjsonschema", "flask"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _embedded(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The schema *name* as one document: ``{"$ref": "#/components/schemas/<name>"}`` with the components beside."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"#/components/schemas/{name}",
            "components": document["components"]}


def run(quick: bool) -> dict[str, Any]:
    document = json.loads(OPENAPI.read_text("utf-8"))
    started = time.perf_counter()
    contract = Contract(document)
    compile_seconds = time.perf_counter() - started
    rounds, calls = (5, 200) if quick else (15, 1000)
    out: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "implementation": platform.python_implementation(),
                    "versions": _versions()},
        "rounds": rounds, "calls_per_batch": calls, "unit": "µs per body",
        "contract_compile_seconds": round(compile_seconds, 3), "bodies": {}, "correctness": {},
    }
    for label, (path, name, body) in BODIES.items():
        raw = json.dumps(body).encode()
        operation = contract.operations[("POST", path)]
        assert operation.body is not None
        jsonschema_validator = jsonschema.Draft202012Validator(
            _embedded(document, name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        rs = operation.body.validator  # the contract's, from the one map of the document
        fns: dict[str, Callable[[], object]] = {
            "json_loads": functools.partial(json.loads, raw),
            "jsonschema": functools.partial(_first_error, jsonschema_validator, body),
            "jsonschema_rs": functools.partial(_first_error, rs, body),
        }
        libraries: dict[str, Callable[[Any], tuple[bool, str]]] = {
            "jsonschema": functools.partial(_verdict, jsonschema_validator),
            "jsonschema_rs": functools.partial(_verdict, rs),
        }
        core = _openapi_core(document, path, raw)
        if core is not None:
            validate, for_body = core
            fns["openapi_core"] = validate
            libraries["openapi_core"] = for_body
        fns["request_context"], fns["contract"] = _contract_call(path, raw)
        samples = interleaved(fns, rounds=rounds, calls=calls)
        figures: dict[str, Any] = {key: summary(value, 1e-6) for key, value in samples.items()}
        figures["ratio_to_json_loads"] = {key: ratio(value, samples["json_loads"]) for key, value in samples.items()
                                          if key != "json_loads"}
        out["bodies"][label] = figures
        out["correctness"][label] = {
            library: {"accepts_the_valid_body": check(body)[0],
                      "refuses": {why: not check(bad)[0] for bad, why in INVALID[label]},
                      "message_for_the_first_invalid": check(INVALID[label][0][0])[1]}
            for library, check in libraries.items()
        }
    out["fastjsonschema"] = _fastjsonschema(document)
    return out


def _first_error(validator: Any, body: Any) -> object:
    return next(iter(validator.iter_errors(body)), None)


def _verdict(validator: Any, body: Any) -> tuple[bool, str]:
    """(valid, the first error's message)."""
    error = next(iter(validator.iter_errors(body)), None)
    return error is None, "" if error is None else str(error.message)[:200]


def _contract_call(path: str, raw: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    """A request context of a bare Flask app alone (the baseline of the next), and the contract's whole check of
    one request in such a context."""
    from flask import Flask, g

    app = Flask("bench")
    app.extensions["citycode_contract"] = Contract.load()
    app.add_url_rule(path, "view", lambda: "", methods=["POST"])

    def context() -> object:
        with app.test_request_context(path, method="POST", data=raw, content_type="application/json"):
            return None

    def call() -> object:
        with app.test_request_context(path, method="POST", data=raw, content_type="application/json"):
            find_operation()
            check_request()
            return g.contract_body

    return context, call


def _openapi_core(document: dict[str, Any], path: str,
                  raw: bytes) -> tuple[Callable[[], object], Callable[[Any], tuple[bool, str]]] | None:
    try:
        from openapi_core import OpenAPI
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
        from werkzeug.test import EnvironBuilder
        from werkzeug.wrappers import Request
    except ImportError:
        return None
    spec: dict[str, Any] = dict(document)
    spec["servers"] = [{"url": "http://localhost"}]
    openapi = OpenAPI.from_dict(spec)

    def request_of(body: bytes) -> Any:
        environ = EnvironBuilder(path=path, method="POST", data=body, content_type="application/json",
                                 base_url="http://localhost", headers=[("Authorization", "Bearer x")]).get_environ()
        return WerkzeugOpenAPIRequest(Request(environ))

    ready = request_of(raw)

    def validate() -> object:
        openapi.validate_request(ready)
        return None

    def for_body(body: Any) -> tuple[bool, str]:
        try:
            openapi.validate_request(request_of(json.dumps(body).encode()))
        except Exception as exc:
            causes = [str(c) for c in getattr(exc, "schema_errors", ())] or [str(exc.__cause__ or exc)]
            return False, "; ".join(causes)[:200]
        return True, ""

    return validate, for_body


def _fastjsonschema(document: dict[str, Any]) -> dict[str, Any]:
    try:
        import fastjsonschema
    except ImportError:
        return {"installed": False}
    out: dict[str, Any] = {"installed": True}
    # A 2020-12 keyword that draft 7 does not know: a metro line is a list of [station, cents] pairs (prefixItems).
    fares = {"lines": {"1": [["101", 0], ["102", "two yuan"]]}, "bands": [[0, 200]], "max_fare": 700}
    try:
        schema = _embedded(document, "MetroFares")
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        probe = fastjsonschema.compile(schema)
        try:
            probe(fares)
            out["refuses_a_metro_fare_in_words_(prefixItems)"] = False
        except fastjsonschema.JsonSchemaException:
            out["refuses_a_metro_fare_in_words_(prefixItems)"] = True
    except Exception as exc:
        out["metro_fares"] = f"{exc.__class__.__name__}: {exc}"[:200]
    for label, (_path, name, body) in BODIES.items():
        schema = _embedded(document, name)
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"  # the newest draft it compiles
        try:
            validate = fastjsonschema.compile(schema)
        except Exception as exc:
            out[label] = {"compiles": False, "error": f"{exc.__class__.__name__}: {exc}"[:200]}
            continue
        refused = {}
        for bad, why in INVALID[label]:
            try:
                validate(bad)
                refused[why] = False
            except fastjsonschema.JsonSchemaException:
                refused[why] = True
        try:
            validate(body)
            accepts = True
        except fastjsonschema.JsonSchemaException as exc:
            accepts = False
            refused["(the valid body)"] = str(exc)[:200]  # type: ignore[assignment]
        out[label] = {"compiles": True, "accepts_the_valid_body": accepts, "refuses": refused}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds; noisier")
    parser.add_argument("--out", type=Path, help="also write the JSON document here")
    args = parser.parse_args(argv)
    emit(run(args.quick), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
