"""DKIM signatures made with OpenSSL (newsletter/send/dkim.py), each verified by dkimpy, an
independent implementation, as a receiving server would: RSA-SHA256 and Ed25519-SHA256
(RFC 8463), on a digest as `send` builds it and on the awkward messages canonicalization must
get right."""

from __future__ import annotations

import base64
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from newsletter.errors import NewsletterError
from newsletter.send.dkim import DkimSigner, relaxed_body, relaxed_header
from tests.conftest import Project, SmtpServer

Dns = Callable[..., bytes]


def write_key(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Dns:
    """The private key in a PEM file; the DNS lookup dkimpy will make for its public key."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)
    else:
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"nl2026._domainkey.signaldesk.example."
        return record

    return lookup


@pytest.fixture(params=["rsa", "ed25519"])
def signer(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[DkimSigner, Dns]:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if request.param == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    dns = write_key(tmp_path / "dkim.pem", key)
    return DkimSigner("signaldesk.example", "nl2026", tmp_path / "dkim.pem"), dns


AWKWARD = [
    # Folded headers, whitespace runs, odd case, trailing blanks, empty lines at the end.
    b"From: Ada <ada@signaldesk.example>\r\nTo:  reader@example.com \r\nSUBJECT: a  long\r\n"
    b"\tsubject,\r\n  folded twice\r\nList-Unsubscribe: <https://signaldesk.example/u/t>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n"
    b"Line  with   runs \t \r\n\r\n  indented\r\n\r\n\r\n",
    # No body at all, and a body without its last line end.
    b"From: ada@signaldesk.example\r\nSubject: empty\r\n\r\n",
    b"From: ada@signaldesk.example\r\nSubject: open\r\n\r\nno line end",
    # A header given twice: the last one is signed; an encoded word; a long line.
    b"From: ada@signaldesk.example\r\nSubject: first\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n"
    b"Date: Wed, 02 Dec 2026 09:00:00 +0000\r\n\r\n" + b"x" * 2000 + b"\r\n",
]


@pytest.mark.parametrize("message", AWKWARD, ids=["folded", "empty", "open", "twice"])
def test_dkimpy_verifies_every_awkward_message(
    signer: tuple[DkimSigner, Dns], message: bytes
) -> None:
    sign, dns = signer
    signed = sign.sign(message)
    # The message follows the signature unchanged; one without its last line end gets the
    # one SMTP would give it, so what is signed is what arrives.
    ends = b"" if message.endswith(b"\r\n") else b"\r\n"
    assert signed.endswith(message + ends)
    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(signed[:-3] + b"!!\n", dnsfunc=dns)


def test_a_sent_digest_verifies_and_signs_the_one_click_headers(
    smtp_project: Project, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    dns = write_key(smtp_project.folder / "dkim.pem", key)
    data = smtp_project.config()
    data["dkim"] = {"domain": "signaldesk.example", "selector": "nl2026", "key_file": "dkim.pem"}
    smtp_project.write_config(data)
    smtp_project.cli("fetch")
    smtp_project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    smtp_project.cli("send", "--list", "weekly", "--yes")
    assert len(smtp_server.received) == 6
    for received in smtp_server.received:
        assert dkim.verify(received.data, dnsfunc=dns)
        header = received.data.split(b"\r\n\r\n", 1)[0].decode()
        signature = " ".join(header.split("DKIM-Signature:", 1)[1].split("\r\n\t")[:3])
        assert "a=ed25519-sha256" in signature
        signed = signature.split(" h=", 1)[1].split(";", 1)[0].split(":")
        assert {"from", "subject", "list-unsubscribe", "list-unsubscribe-post"} <= set(signed)


def test_canonicalization_follows_rfc_6376_examples() -> None:
    # RFC 6376 3.4.5: " C \r\nD \t E\r\n\r\n\r\n" -> " C\r\nD E\r\n"; "A: X" -> "a:X".
    assert relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert relaxed_header(b"A", b" X\r\n") == b"a:X"
    assert relaxed_header(b"B ", b" Y\t\r\n\tZ  \r\n") == b"b:Y Z"
    assert relaxed_body(b"") == b""
    assert relaxed_body(b"\r\n\r\n") == b""


@pytest.mark.parametrize("kind", ["short rsa", "ec", "garbage", "encrypted"])
def test_an_unusable_key_is_one_line_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "dkim.pem"
    if kind == "short rsa":  # cryptography will not make one; OpenSSL's command line will
        openssl = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"]
        if shutil.which("openssl") is None:
            pytest.skip("no openssl command")
        path.write_bytes(subprocess.run(openssl, capture_output=True, check=True).stdout)
    elif kind == "garbage":
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    else:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "encrypted"
            else ec.generate_private_key(ec.SECP256R1())
        )
        protection = (
            serialization.BestAvailableEncryption(b"secret")
            if kind == "encrypted"
            else serialization.NoEncryption()
        )
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protection
            )
        )
    with pytest.raises(NewsletterError) as refused:
        DkimSigner("signaldesk.example", "nl2026", path)
    assert str(path) in refused.value.message
    assert "\n" not in refused.value.message


def test_dkimpy_verifies_bodies_of_every_kind_of_whitespace(tmp_path: Path) -> None:
    """Canonicalization's corner cases drawn at random: runs of spaces and tabs, lines of
    blanks, blank lines at the end, no line end at the end."""
    dns = write_key(tmp_path / "dkim.pem", ed25519.Ed25519PrivateKey.generate())
    signer = DkimSigner("signaldesk.example", "nl2026", tmp_path / "dkim.pem")
    draw = random.Random(20261202)
    pieces = [b" ", b"  ", b"\t", b" \t ", b"a", b"word", b"\r\n", b"\r\n\r\n", b"="]
    head = b"From: ada@signaldesk.example\r\nSubject: s\r\n\r\n"
    for _ in range(150):
        body = b"".join(draw.choice(pieces) for _ in range(draw.randrange(0, 40)))
        assert dkim.verify(signer.sign(head + body), dnsfunc=dns), body
