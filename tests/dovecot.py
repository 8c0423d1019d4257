"""A private Dovecot IMAP server from Debian's package, on 127.0.0.1, for the bounce reader."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.conftest import free_port

DOVECOT = "/usr/sbin/dovecot"


@contextmanager
def imap_server(user: str, password: str) -> Iterator[int]:
    """Dovecot listening on 127.0.0.1 (plain IMAP) with one user; yields the port."""
    if not Path(DOVECOT).exists():
        if os.environ.get("NEWSLETTER_REQUIRE_DOVECOT"):
            pytest.fail("dovecot is not installed; .ci/run installs dovecot-imapd")
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    if os.geteuid() != 0:
        pytest.skip("starting a Dovecot instance needs root")
    root = Path(tempfile.mkdtemp(prefix="newsletter-imap-", dir="/tmp"))
    root.chmod(0o755)
    for folder in ("run", "state", "mail"):
        (root / folder).mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}\n")
    port = free_port()
    (root / "dovecot.conf").write_text(f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
mail_location = maildir:{root}/mail/%u/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _logs_in(port, user, password):
            assert process.poll() is None, _log(root)
            assert time.monotonic() < deadline, _log(root)
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


def _logs_in(port: int, user: str, password: str) -> bool:
    """Whether the login service answers and takes the user's password: ready for a test."""
    try:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=5)
    except OSError:
        return False  # not listening yet
    try:
        client.login(user, password)
    except (imaplib.IMAP4.error, OSError):
        return False  # listening, but the auth service is not up yet
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return True


def _log(root: Path) -> str:
    path = root / "dovecot.log"
    return path.read_text(errors="replace") if path.exists() else ""
