"""Every case of tests/data/corpus/email-addresses, classified as our policy says.

Policy (newsletter/audience/addresses.py): email-validator's defaults. Non-ASCII local parts
need SMTPUTF8; quoted local parts, display-name forms, domain literals, empty local parts and
special-use domains are refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from newsletter.audience.addresses import ascii_address, check_address
from tests.conftest import CORPUS

CASES: list[dict[str, Any]] = json.loads(
    (CORPUS / "email-addresses" / "email-validator-cases.json").read_text()
)["cases"]

BY_CATEGORY = {
    "valid": "valid",
    "valid_unless_strict": "valid",
    "valid_only_with_smtputf8": "smtputf8",
    "invalid": "invalid",
    "invalid_when_smtputf8_off": "not valid",
    "valid_only_with_allow_quoted_local": "invalid",
    "valid_only_with_allow_domain_literal": "invalid",
    "valid_only_in_test_environment": "invalid",
    "valid_only_with_allow_empty_local": "invalid",
}


def expected(case: dict[str, Any]) -> str:
    text = case["input"]
    local = text.rpartition("@")[0]
    if case["category"] in ("valid", "valid_unless_strict", "valid_only_with_smtputf8"):
        # The corpus's "valid" assumes allow_quoted_local and allow_display_name; we take
        # neither (see the module docstring), and non-ASCII local parts need SMTPUTF8.
        if local.startswith('"') or "<" in text:
            return "invalid"
        return "valid" if local.isascii() else "smtputf8"
    if case["category"] != "see_status":
        return BY_CATEGORY[case["category"]]
    status = case["pyisemail_status"]
    if status in ("ISEMAIL_VALID", "ISEMAIL_RFC5322_LOCAL_TOOLONG") and not local.startswith('"'):
        return "valid"  # too-long local parts are rejected only in strict mode
    return "invalid"


@pytest.mark.parametrize("case", CASES, ids=lambda case: ascii(case["input"])[:60])
def test_corpus_case(case: dict[str, Any]) -> None:
    verdict = check_address(case["input"]).verdict
    want = expected(case)
    if want == "not valid":
        assert verdict != "valid"
    else:
        assert verdict == want, check_address(case["input"]).reason


def test_valid_cases_keep_email_validators_normal_form() -> None:
    for case in CASES:
        if expected(case) == "valid" and "expected_fields" in case:
            assert check_address(case["input"]).normalized == case["expected_fields"]["normalized"]


def test_idn_domains_go_out_as_punycode() -> None:
    assert ascii_address("user@bücher.example") == "user@xn--bcher-kva.example"
    assert ascii_address("plain@example.com") == "plain@example.com"
