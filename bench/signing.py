"""DKIM signing cost per message: dkimpy (pure Python, what signed until 2026-12-02) against
newsletter/send/dkim.py (OpenSSL through `cryptography`), RSA 2048 and Ed25519, on the sample
digest as `send` builds it, in the same process, one core.

    .venv/bin/python bench/signing.py [--messages 300]

Prints a Markdown table. Needs dkimpy (the test extras) for the reference.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402

from bench.send import dkim_key  # noqa: E402
from newsletter.app import Newsletter  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.send.dkim import SIGNED_HEADERS, DkimSigner  # noqa: E402
from tests.conftest import dump_toml  # noqa: E402


def sample_message(work: Path) -> bytes:
    data = tomllib.loads((ROOT / "config.toml").read_text())
    data["feeds"] = [{"name": "sample", "url": str(ROOT / "samples" / "briefings.xml")}]
    data["database"] = {"url": f"sqlite:///{work / 'bench.db'}"}
    (work / "config.toml").write_text(dump_toml(data))
    with Newsletter(load_settings(work / "config.toml")) as app:
        app.feeds.fetch()
        draft = app.digests.draft("weekly")
        assert draft is not None
        return draft.message.render(app.digests.sample_recipient("reader@example.com"))


def dkimpy_key(path: Path, kind: str) -> tuple[bytes, bytes]:
    """The same key as dkimpy reads it: RSA as PKCS#1 PEM, Ed25519 as its base64 seed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed), b"ed25519-sha256"
    assert isinstance(key, rsa.RSAPrivateKey)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem, b"rsa-sha256"


def per_message(sign: Callable[[bytes], bytes], message: bytes, count: int) -> float:
    sign(message)  # warm
    started = time.process_time()
    for _ in range(count):
        sign(message)
    return (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    count = parser.parse_args().messages
    print("| key | message | dkimpy | ours (OpenSSL) | ratio | ours a core |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        message = sample_message(work)
        for kind in ("rsa", "ed25519"):
            dkim_key(work / f"{kind}.pem", kind)
            ours = DkimSigner("signaldesk.example", "bench", work / f"{kind}.pem")
            key, algorithm = dkimpy_key(work / f"{kind}.pem", kind)

            def reference(raw: bytes, key: bytes = key, algorithm: bytes = algorithm) -> bytes:
                signature = dkim.sign(
                    raw,
                    b"bench",
                    b"signaldesk.example",
                    key,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=list(SIGNED_HEADERS),
                    signature_algorithm=algorithm,
                )
                return bytes(signature) + raw

            theirs = per_message(reference, message, max(20, count // 10))
            mine = per_message(ours.sign, message, count)
            print(
                f"| {kind} | {len(message) / 1024:.0f} KB | {theirs * 1e3:.2f} ms | "
                f"{mine * 1e3:.3f} ms | {theirs / mine:.0f}x | {1 / mine:,.0f} msg/s |"
            )


if __name__ == "__main__":
    main()
