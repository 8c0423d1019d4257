"""Amazon SES notifications: JSON in a mail's body, sometimes wrapped in an SNS envelope."""

from __future__ import annotations

import json
import re
from email.message import Message
from typing import Any

from newsletter.bounces.mime import bare_address, leaf_parts, part_text
from newsletter.bounces.reasons import classify, status_code
from newsletter.bounces.report import MAX_RECIPIENTS, Recipient, Report

# The notice's own key, or the same key escaped in the string an SNS envelope wraps it in.
_SES_KEY = re.compile(r'\\?"(notificationType|eventType)\\?"')


def ses_notice(message: Message) -> Report | None:
    """Amazon SES notifications (JSON in the body, sometimes wrapped in an SNS envelope)."""
    text = " ".join(part_text(part) for part in leaf_parts(message)).strip()
    if not _SES_KEY.search(text):
        return None
    decoder = json.JSONDecoder(strict=False)  # mail wraps long JSON lines
    try:
        body = text[text.index("{") :]
        try:
            notice, _ = decoder.raw_decode(body)
        except ValueError:
            notice, _ = decoder.raw_decode(body.replace("\n", ""))
        if isinstance(notice.get("Message"), str):
            notice = json.loads(notice["Message"], strict=False)
    except (ValueError, KeyError, AttributeError, RecursionError):
        return None
    if not isinstance(notice, dict):
        return None
    report = _ses_verdict(notice)
    if report is not None:
        report.original_return_path, report.original_message_ids = _ses_original(notice)
    return report


def _ses_verdict(notice: dict[str, Any]) -> Report | None:
    kind = notice.get("notificationType") or notice.get("eventType")
    if kind == "Complaint":
        people = notice.get("complaint", {}).get("complainedRecipients", [])[:MAX_RECIPIENTS]
        return Report(
            "complaint", [Recipient(p["emailAddress"], "complaint", "feedback") for p in people]
        )
    if kind == "Delivery":
        people = notice.get("delivery", {}).get("recipients", [])[:MAX_RECIPIENTS]
        return Report("delivered", [Recipient(p, "none", "delivered", "2.0.0") for p in people])
    if kind == "Bounce":
        bounce = notice.get("bounce", {})
        permanent = bounce.get("bounceType") == "Permanent"
        recipients = []
        for person in bounce.get("bouncedRecipients", [])[:MAX_RECIPIENTS]:
            status = status_code(person.get("status", ""))
            diagnostic = person.get("diagnosticCode", "")
            reason, judged = classify(status, diagnostic)
            recipients.append(
                Recipient(
                    person["emailAddress"],
                    judged if permanent else "soft",
                    reason,
                    status,
                    diagnostic[:500],
                )
            )
        return Report("bounce", recipients)
    return None


def _ses_original(notice: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(the envelope sender, the Message-IDs) of the message a notice is about: SES names them
    in `mail` (its own id, and ours among the headers when it was told to include them)."""
    mail = notice.get("mail")
    if not isinstance(mail, dict):
        return [], []
    source = mail.get("source")
    return_path = [bare_address(source)] if isinstance(source, str) else []
    common = mail.get("commonHeaders")
    headers = mail.get("headers")
    ids = [
        *([common.get("messageId")] if isinstance(common, dict) else []),
        *(
            header.get("value")
            for header in (headers if isinstance(headers, list) else [])
            if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id"
        ),
        mail.get("messageId"),
    ]
    return return_path, [value for value in ids if isinstance(value, str)]
