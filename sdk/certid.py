"""Identifiers of electronic certificates and of companies.

* GB/T 36904 certificate identifier:
  ``1.2.156.3005.2.<type code>.<issuer code>.<serial>.<version>.<check>`` where the check
  character is ISO/IEC 7064 MOD 37,36 (hybrid system over 0-9A-Z) computed over every
  character before it with the dots left out.
* GB 32100 unified social credit code (统一社会信用代码) of a company: 18 characters, the last a
  check character modulo 31.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHANUMERIC)}
ROOT = "1.2.156.3005.2"
_PART = re.compile(r"^[0-9A-Z]{1,32}$")
#: A well-formed identifier in one match: the root, four parts as ``_PART`` and one check character.
_IDENTIFIER = re.compile(re.escape(ROOT) + r"\.([0-9A-Z]{1,32})\.([0-9A-Z]{1,32})\.([0-9A-Z]{1,32})\.([0-9A-Z]{1,32})"
                         r"\.([0-9A-Z])\Z")


class IdentifierError(ValueError):
    """Not a valid identifier; the message says what is wrong."""


def mod37_36_check(text: str) -> str:
    """The ISO/IEC 7064 MOD 37,36 check character for *text* (characters 0-9A-Z)."""
    return ALPHANUMERIC[(37 - _mod37_36_state(text)) % 36]


#: The MOD 37,36 step as a table: ``_STEP[p][char]`` is the next state after *char* in state *p*,
#: ``s = (p + value) % 36 or 36; p = (2 * s) % 37``.
_STEP: tuple[dict[str, int], ...] = tuple(
    {char: (2 * ((p + value) % 36 or 36)) % 37 for char, value in _VALUE.items()} for p in range(37)
)


def _mod37_36_state(text: str, p: int = 36) -> int:
    """The MOD 37,36 state after *text*, from state *p* (36 at the start)."""
    step = _STEP
    try:
        for char in text:
            p = step[p][char]
    except KeyError:
        raise IdentifierError(f"character {char!r} is not 0-9 or A-Z") from None
    return p


#: The state after ``ROOT``, type code and issuer code, which all certificates of one type from one
#: department share: computed once for each of the few such pairs.
_PREFIX_STATE: dict[tuple[str, str], int] = {}


def _check_of(type_code: str, issuer_code: str, serial: str, version: str) -> str:
    """The check character of the identifier with these parts (``mod37_36_check`` of the body without dots)."""
    p = _PREFIX_STATE.get((type_code, issuer_code))
    if p is None:
        p = _mod37_36_state(ROOT.replace(".", "") + type_code + issuer_code)
        if len(_PREFIX_STATE) < 4096:
            _PREFIX_STATE[(type_code, issuer_code)] = p
    return ALPHANUMERIC[(37 - _mod37_36_state(serial + version, p)) % 36]


def mod37_36_valid(text_with_check: str) -> bool:
    return len(text_with_check) >= 2 and mod37_36_check(text_with_check[:-1]) == text_with_check[-1]


@dataclass(frozen=True)
class CertificateId:
    type_code: str
    issuer_code: str
    serial: str
    version: str

    def __str__(self) -> str:
        body = f"{ROOT}.{self.type_code}.{self.issuer_code}.{self.serial}.{self.version}"
        return f"{body}.{_check_of(self.type_code, self.issuer_code, self.serial, self.version)}"

    @classmethod
    def build(cls, type_code: str, issuer_code: str, serial: str, version: int | str = 1) -> CertificateId:
        parts = (type_code, issuer_code, serial, str(version))
        for name, part in zip(("type code", "issuer code", "serial", "version"), parts, strict=True):
            if not _PART.match(part):
                raise IdentifierError(f"{name} must be 1 to 32 characters 0-9 or A-Z, got {part!r}")
        return cls(*parts)

    @classmethod
    def parse(cls, text: str) -> CertificateId:
        """Parse and validate an identifier, check character included."""
        found = _IDENTIFIER.match(text) if type(text) is str else None
        if found is not None:  # well formed: only the check character is left to check
            type_code, issuer_code, serial, version, check = found.groups()
            if _check_of(type_code, issuer_code, serial, version) == check:
                return cls(type_code, issuer_code, serial, version)
        # anything else: the step by step checks below, which say what is wrong
        if not isinstance(text, str) or not text.startswith(ROOT + "."):
            raise IdentifierError(f"a certificate identifier starts with {ROOT}.")
        parts = text[len(ROOT) + 1:].split(".")
        if len(parts) != 5:
            raise IdentifierError("a certificate identifier has type, issuer, serial, version and check parts")
        *fields, check = parts
        ident = cls.build(*fields)
        if len(check) != 1 or str(ident) != text:
            raise IdentifierError("wrong check character")
        return ident


_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check(first17: str) -> str:
    total = 0
    for char, weight in zip(first17, _USCC_WEIGHTS, strict=True):
        value = _USCC_ALPHABET.find(char)
        if value < 0:
            raise IdentifierError(f"character {char!r} is not allowed in a unified social credit code")
        total += value * weight
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def validate_uscc(code: str) -> str:
    """Return *code* when it is a valid unified social credit code, else raise IdentifierError."""
    if not isinstance(code, str) or len(code) != 18:
        raise IdentifierError("a unified social credit code has 18 characters")
    if uscc_check(code[:17]) != code[17]:
        raise IdentifierError("wrong check character in the unified social credit code")
    return code
