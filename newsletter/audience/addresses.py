"""E-mail addresses: which ones we take, the one spelling we keep, and the form that goes out.

Policy (email-validator underneath, no DNS look-ups):
- valid: a normal address; the domain is lower-cased and IDNA-checked, the local part is kept.
- smtputf8: valid, but with non-ASCII letters before the @; only SMTPUTF8 servers take it, and
  this sender does not speak SMTPUTF8 yet, so such addresses are refused with that reason.
- invalid: everything else, including quoted local parts, IP-address domains, empty local parts
  and special-use domains (.test, .local, .invalid, ...), which no newsletter reader has.
The address is judged exactly as given: a display-name form ("Ada <ada@example.com>") belongs
in two CSV columns, and CR/LF or spaces inside the value are errors, never padding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import idna
from email_validator import EmailNotValidError, validate_email

from newsletter.errors import AddressError

Verdict = Literal["valid", "smtputf8", "invalid"]


@dataclass(frozen=True)
class AddressCheck:
    verdict: Verdict
    normalized: str = ""
    reason: str = ""


def check_address(raw: str) -> AddressCheck:
    """Judge an address exactly as given (callers strip CSV padding; CR/LF is never padding)."""
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        return AddressCheck("invalid", reason=str(exc))
    if result.smtputf8:
        return AddressCheck(
            "smtputf8",
            normalized=str(result.normalized),
            reason="it has non-ASCII letters before the @, which only SMTPUTF8 mail servers "
            "accept; this sender does not use SMTPUTF8 yet",
        )
    return AddressCheck("valid", str(result.normalized))


def normalize_email(raw: str) -> str:
    """The spelling we store, or AddressError saying why the address cannot be used."""
    check = check_address(raw)
    if check.verdict != "valid":
        raise AddressError(f"{raw.strip()!r} is not an address we can mail: {check.reason}")
    return check.normalized


def email_key(email: str) -> str:
    """Ada@Example.com and ada@example.com are one person."""
    return email.casefold()


def email_hash(email: str) -> str:
    """What a suppression keeps of a forgotten address."""
    return hashlib.sha256(email_key(email).encode("utf-8")).hexdigest()


def ascii_address(email: str) -> str:
    """The form that goes on the wire: an internationalized domain in punycode (IDNA 2008)."""
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        return email
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
