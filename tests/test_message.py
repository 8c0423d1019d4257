"""The prepared message: per-recipient bytes are well-formed MIME and decode to the right text."""

from __future__ import annotations

import random
from email.headerregistry import Address
from email.utils import getaddresses

import pytest

from newsletter.personalize import Markers, Placeholder, Recipient
from newsletter.send.message import PreparedMessage, single_message
from tests.conftest import parse

M = Markers("abc123")

TEXT = (
    "Hello "
    + M.marker(Placeholder.NAME)
    + ",\n"
    + "Käse und Brötchen — “quotes” — "
    + "x" * 200
    + "\n"
    + "You are "
    + M.marker(Placeholder.EMAIL)
    + ". Leave: "
    + M.marker(Placeholder.UNSUBSCRIBE_URL)
    + "\n"
)
HTML = (
    "<p>Hi "
    + M.marker(Placeholder.NAME)
    + "</p><p>"
    + "é" * 300
    + "</p>"
    + '<a href="'
    + M.marker(Placeholder.UNSUBSCRIBE_URL)
    + '">Unsubscribe</a> '
    + M.marker(Placeholder.EMAIL)
)


def prepared(
    subject: str = "Weekly: “news” & more", text: str = TEXT, html: str = HTML, markers: Markers = M
) -> PreparedMessage:
    return PreparedMessage(
        sender="SignalDesk <briefings@signaldesk.example>",
        subject=subject,
        text=text,
        html_body=html,
        list_id="The Weekly Briefing <weekly.signaldesk.example>",
        message_id_domain="signaldesk.example",
        markers=markers,
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
        TEXT.replace(M.marker(Placeholder.NAME), reader.name)
        .replace(M.marker(Placeholder.EMAIL), reader.email)
        .replace(M.marker(Placeholder.UNSUBSCRIBE_URL), reader.unsubscribe_url)
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


def test_no_encoded_line_is_longer_than_76_octets_whatever_the_lengths() -> None:
    chooser = random.Random(1)
    for _ in range(300):
        before = "".join(chooser.choice("aé= x") for _ in range(chooser.randrange(60, 160)))
        value = "".join(chooser.choice("bü=") for _ in range(chooser.randrange(0, 120)))
        text = before + M.marker(Placeholder.NAME) + before[::-1]
        reader = Recipient(1, "a@example.com", value, "https://x.example/u")
        raw = prepared(text=text, html=text).render(reader)
        body = raw.partition(b"\r\n\r\n")[2]
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
        decoded = next(parse(raw).iter_parts()).get_content().replace("\r\n", "\n")
        assert decoded == (before + value + before[::-1]).replace("\r\n", "\n") + "\n"


def test_no_line_of_a_rendered_message_starts_with_a_dot_and_every_dot_decodes_back() -> None:
    """SMTP writes these messages without dot-stuffing them (smtp.exchange's `dot_free`): a
    line starting with a dot must never be rendered, wherever text, values or folding put one."""
    chooser = random.Random(7)
    for _ in range(300):
        before = "".join(chooser.choice(".a.\n é") for _ in range(chooser.randrange(0, 200)))
        value = "".join(chooser.choice("..b ") for _ in range(chooser.randrange(0, 90)))
        text = "." + before + M.marker(Placeholder.NAME) + "\n." + before[::-1]
        reader = Recipient(1, "a@example.com", value, "https://x.example/u")
        raw = prepared(text=text, html=text).render(reader)
        assert b"\r\n." not in raw
        assert not raw.startswith(b".")
        body = raw.partition(b"\r\n\r\n")[2]
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
        decoded = next(parse(raw).iter_parts()).get_content().replace("\r\n", "\n")
        filled = text.replace(M.marker(Placeholder.NAME), value)
        assert decoded == (filled if filled.endswith("\n") else filled + "\n")


def test_markers_of_another_digest_are_left_alone() -> None:
    """Feed text cannot forge a marker: it would need this digest's random nonce."""
    forged = "[[nl-000000:email]] [[nl:email]] " + Markers("other").marker(Placeholder.EMAIL)
    raw = prepared(text=forged + M.marker(Placeholder.EMAIL)).render(recipient())
    text = next(parse(raw).iter_parts()).get_content()
    assert text.startswith(forged)
    assert text.count("zoe@example.com") == 1


def test_message_ids_differ_between_digests_with_the_same_numbers() -> None:
    reader = recipient()
    assert prepared(markers=Markers("aaaa")).message_id(reader) != prepared(
        markers=Markers("bbbb")
    ).message_id(reader)


@pytest.mark.parametrize(
    "name",
    ["O'Brien, Siân", "José (work)", 'Ada "the Countess" <b>L</b>', "Zoë", "Plain Name", "a,b"],
)
def test_a_readers_name_is_one_display_name_whatever_it_holds(name: str) -> None:
    """Names come from readers now (the preference centre) and from imports: a comma, brackets
    or quotes in one must never make a second address or hide the real one."""
    raw = prepared().render(recipient(name, "reader@example.com"))
    addresses = parse(raw)["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in addresses] == [(name, "reader@example.com")]
    single = single_message(
        sender="Letters <letters@example.com>",
        to=Address(display_name=name, addr_spec="reader@example.com"),
        subject="Confirm",
        text="Press the button.",
        html_body="<p>Press the button.</p>",
        message_id_domain="example.com",
    )
    addresses = parse(single)["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in addresses] == [(name, "reader@example.com")]


def test_values_written_as_they_are_are_what_the_encoder_would_write() -> None:
    from newsletter.send.message import _encoded_value, _qp, _soft_break_after

    chooser = random.Random(3)
    alphabet = [chr(c) for c in range(32, 127)] + ["é", "\t", "\n"]
    for _ in range(20_000):
        value = "".join(chooser.choice(alphabet) for _ in range(chooser.randrange(0, 90)))
        assert _encoded_value(value) == _soft_break_after(_qp(value)), value
