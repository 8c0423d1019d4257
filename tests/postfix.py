"""A private Postfix instance from Debian's package, listening and relaying on 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


def require_postfix() -> None:
    if not Path(POSTFIX).exists() or not Path("/etc/postfix/master.cf").exists():
        if os.environ.get("NEWSLETTER_REQUIRE_POSTFIX"):
            pytest.fail("postfix is not installed; .ci/run installs it with apt-get")
        pytest.skip("postfix is not installed (apt-get install postfix)")
    if os.geteuid() != 0:
        pytest.skip("starting a Postfix instance needs root")


@contextmanager
def postfix_relay(listen_port: int, relay_port: int) -> Iterator[Path]:
    """Postfix on 127.0.0.1:listen_port, relaying everything to 127.0.0.1:relay_port."""
    require_postfix()
    root = Path(tempfile.mkdtemp(prefix="newsletter-postfix-", dir="/tmp"))
    root.chmod(0o755)  # the postfix user must reach its queue
    etc, queue, data = root / "etc", root / "queue", root / "data"
    for folder in (etc, queue, data):
        folder.mkdir()
    shutil.chown(data, "postfix")
    (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
myhostname = relay.newsletter.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
alias_maps =
alias_database =
smtputf8_enable = no
""")
    master = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and not line.startswith(("#", " ")):
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{listen_port}"
            fields[4] = "n"  # no chroot: the queue is not in the default place
            line = "  ".join(fields)
        master.append(line)
    (etc / "master.cf").write_text("\n".join(master) + "\n")
    run = ["postfix", "-c", str(etc)]
    subprocess.run([*run, "start"], check=True, capture_output=True, timeout=60)
    try:
        deadline = time.monotonic() + 20
        while "daemon started" not in _log(root):
            assert time.monotonic() < deadline, _log(root)
            time.sleep(0.1)
        yield root
    finally:
        subprocess.run([*run, "stop"], check=False, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _log(root: Path) -> str:
    path = root / "maillog"
    return path.read_text(errors="replace") if path.exists() else ""
