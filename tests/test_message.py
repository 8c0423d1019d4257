"""The prepared message: per-recipient bytes are well-formed MIME and decode to the right text."""

from __future__ import annotations

from email.utils import getaddresses

from newsletter.personalize import Placeholder, Recipient
from newsletter.send.message import PreparedMessage
from tests.conftest import parse

TEXT = (
    "Hello "
    + Placeholder.NAME
    + ",\n"
    + "Käse und Brötchen — “quotes” — "
    + "x" * 200
    + "\n"
    + "You are "
    + Placeholder.EMAIL
    + ". Leave: "
    + Placeholder.UNSUBSCRIBE_URL
    + "\n"
)
HTML = (
    "<p>Hi "
    + Placeholder.NAME
    + "</p><p>"
    + "é" * 300
    + "</p>"
    + '<a href="'
    + Placeholder.UNSUBSCRIBE_URL
    + '">Unsubscribe</a> '
    + Placeholder.EMAIL
)


def prepared(subject: str = "Weekly: “news” & more") -> PreparedMessage:
    return PreparedMessage(
        sender="SignalDesk <briefings@signaldesk.example>",
        subject=subject,
        text=TEXT,
        html_body=HTML,
        list_id="The Weekly Briefing <weekly.signaldesk.example>",
        message_id_domain="signaldesk.example",
        digest_key="digest7",
    )


def recipient(name: str = "Zoë <Ångström> & Co", email: str = "zoe@example.com") -> Recipient:
    long_url = "https://signaldesk.example/unsubscribe/" + "A" * 120
    return Recipient(42, email, name, long_url)


def test_recipient_values_decode_exactly() -> None:
    reader = recipient()
    raw = prepared().render(reader)
    message = parse(raw)
    text_part, html_part = message.iter_parts()
    expected_text = (
        TEXT.replace(Placeholder.NAME, reader.name)
        .replace(Placeholder.EMAIL, reader.email)
        .replace(Placeholder.UNSUBSCRIBE_URL, reader.unsubscribe_url)
    )
    assert text_part.get_content().replace("\r\n", "\n") == expected_text
    html = html_part.get_content()
    assert "Hi Zoë &lt;Ångström&gt; &amp; Co</p>" in html  # escaped in HTML, raw in text
    assert f'href="{reader.unsubscribe_url}"' in html
    assert "é" * 300 in html


def test_lines_stay_short_and_headers_are_sane() -> None:
    raw = prepared().render(recipient())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert raw.isascii()
    message = parse(raw)
    assert message["Subject"] == "Weekly: “news” & more"
    assert getaddresses([str(message["To"])]) == [("Zoë <Ångström> & Co", "zoe@example.com")]
    unsubscribe_line = next(
        line for line in head.split(b"\r\n") if line.startswith(b"List-Unsubscribe:")
    )
    assert b"=?" not in unsubscribe_line  # folded URLs break one-click unsubscribe
    assert message["List-Unsubscribe"] == f"<{recipient().unsubscribe_url}>"


def test_message_id_is_stable_per_recipient_and_unique_across_them() -> None:
    message = prepared()
    first = message.message_id(recipient())
    assert first == message.message_id(recipient())
    other = Recipient(43, "b@example.com", "", "https://signaldesk.example/u/x")
    assert first != message.message_id(other)
    assert first.endswith("@signaldesk.example>")


def test_header_injection_from_names_and_subjects_is_impossible() -> None:
    evil = recipient(name="Eve\r\nBcc: victim@example.org\r\n")
    raw = prepared(subject="Hi\r\nBcc: victim@example.org").render(evil)
    message = parse(raw)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in raw.partition(b"\r\n\r\n")[0]
