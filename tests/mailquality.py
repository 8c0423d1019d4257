"""Measuring the digest e-mail: what caniemail.com's data says e-mail clients lack, what axe-core
finds in a browser, and what SpamAssassin makes of the message as it is sent.

The tools are real programs outside Python: Node packages pinned in tests/node (installed on
first use with `npm ci`), Debian's spamassassin, Debian's chromium. When one is missing the
test is skipped, unless NEWSLETTER_REQUIRE_BROWSER=1 (CI sets it) turns that into a failure,
so a CI machine without a tool cannot pass by measuring nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.conftest import ROOT

NODE_DIR = ROOT / "tests" / "node"
NPM_CI = ("npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund")
REQUIRE_ENV = "NEWSLETTER_REQUIRE_BROWSER"
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice")

# SpamAssassin rules that fire on how the HTML part is written rather than on what it says or
# how it travelled. From /usr/share/spamassassin (4.0.1): 20_html_tests.cf, the HTMLEval and
# MIMEEval rules of 20_body_tests.cf and 50_scores.cf, and the markup rules of 72_active.cf.
# A trailing "*" is a prefix. Names absent from one rule set (T_REMOTE_IMAGE is from sa-update's
# newer rules) cost nothing and keep the check meaningful after an update.
MARKUP_RULES: frozenset[str] = frozenset(
    {
        "HTML_*",  # tags, tag balance, fonts, contrast, images, obfuscation, title vs subject
        "MIME_HTML_*",  # MIME_HTML_ONLY, MIME_HTML_MOSTLY, MIME_HTML_ONLY_MULTI: text part
        "MPART_ALT_DIFF*",  # the text and HTML alternatives say different things
        "T_REMOTE_IMAGE",
        "REMOTE_IMAGE",
        "KAM_HTML_*",
        "T_KAM_HTML_*",  # KAM_HTML_FONT_INVALID: a colour the parser cannot read
        "OBFUSCATING_COMMENT",  # comments inside words (MSO conditional comments can do it)
        "HIDE_WIN_STATUS",
        "JS_FROMCHARCODE",
        "HTTPS_HTTP_MISMATCH",  # link text shows https://, the href is http://
        "CONTENT_AFTER_HTML*",  # text after </html>
        "LONG_INVISIBLE_TEXT",  # long hidden blocks: a preheader padded too far
        "TVD_VIS_HIDDEN",
        "AC_DIV_BONANZA",  # ten empty <div>s in a row
        "MIXED_FONT_CASE",
        "MIXED_CENTER_CASE",
        "MIXED_IMG_CASE",
        "URI_DATA",  # data: URIs
        "LONG_IMG_URI",
        "DC_IMAGE_SPAM_*",
        "STOCK_IMG_HTML",
    }
)
# Every message with an HTML part hits it (0.001 points): it says there is HTML, not how.
EVERY_HTML_MESSAGE = frozenset({"HTML_MESSAGE"})


def missing(tool: str, install: str) -> NoReturn:
    """Skip, or in CI fail, in one line saying what to install."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{tool} is not installed: {install}", pytrace=False)
    pytest.skip(f"{tool} is not installed ({install})")


# --- Node packages ------------------------------------------------------------------------

_install_lock = threading.Lock()


def _installed() -> bool:
    # npm ci writes node_modules/.package-lock.json last; older than the lock file means
    # package-lock.json changed since (a pull), and the packages are those of before.
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


def node_modules() -> Path:
    """tests/node/node_modules, installed from package-lock.json on first use."""
    if shutil.which("node") is None:
        missing("node", "apt-get install -y nodejs npm, Node 18 or later")
    with _install_lock:
        if not _installed():
            if shutil.which("npm") is None:
                missing("npm", "apt-get install -y npm")
            # npm ci empties node_modules before filling it: an flock on the lock file keeps
            # two pytest processes on this checkout (xdist workers, a second run) from colliding.
            with (NODE_DIR / "package-lock.json").open("rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX)
                try:
                    if not _installed():
                        result = subprocess.run(
                            NPM_CI, capture_output=True, text=True, timeout=600, check=False
                        )
                        if result.returncode != 0:
                            pytest.fail(
                                f"`{' '.join(NPM_CI)}` failed:\n{result.stderr[-3000:]}",
                                pytrace=False,
                            )
                finally:
                    fcntl.flock(held, fcntl.LOCK_UN)
    return NODE_DIR / "node_modules"


# --- caniemail ----------------------------------------------------------------------------

Pair = tuple[str, str]  # (caniemail feature, e-mail client), e.g. ("@media", "outlook.windows")


@dataclass(frozen=True)
class Support:
    unsupported: frozenset[Pair]
    partial: frozenset[Pair]


def caniemail(html: str) -> Support:
    """The (feature, client) pairs caniemail.com's data, through @jsx-email/doiuse-email, says
    are unsupported or partly supported, over all the e-mail clients it knows."""
    node_modules()
    node = shutil.which("node")
    assert node is not None  # node_modules() skipped or failed without it
    result = subprocess.run(
        [node, str(NODE_DIR / "caniemail.mjs")],
        input=html,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"caniemail.mjs failed:\n{result.stderr[-3000:]}"
    found = json.loads(result.stdout)
    return Support(
        unsupported=frozenset((feature, client) for feature, client in found["unsupported"]),
        partial=frozenset((feature, client) for feature, client in found["partial"]),
    )


def unsupported_pairs(html: str) -> set[Pair]:
    return set(caniemail(html).unsupported)


# --- axe-core -----------------------------------------------------------------------------

_AXE_RUN = """(tags) => axe.run(document, {runOnly: {type: "tag", values: tags}}).then(
  (results) => [
    ...results.violations.map((rule) => ({...rule, incomplete: false})),
    ...results.incomplete.map((rule) => ({...rule, incomplete: true})),
  ].map((rule) => ({
    id: rule.id,
    impact: rule.impact,
    nodes: rule.nodes.length,
    help: rule.help,
    incomplete: rule.incomplete,
    targets: rule.nodes.slice(0, 5).map((node) => node.target.join(" ")),
  })))"""


def axe_violations(page: Any, *, incomplete: bool = False) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA and best-practice violations in a Playwright page, each as
    id, impact, nodes (how many), help and the first few targets.

    With `incomplete`, also the checks axe could not decide, marked "incomplete": True. Colour
    contrast lands there when text sits on an image or a gradient, so a dark-mode design can
    pass with no violations while nobody checked its contrast."""
    page.add_script_tag(path=str(node_modules() / "axe-core" / "axe.min.js"))
    rules: list[dict[str, Any]] = page.evaluate(_AXE_RUN, list(AXE_TAGS))
    return [rule for rule in rules if incomplete or not rule["incomplete"]]


# --- SpamAssassin -------------------------------------------------------------------------

SPAMASSASSIN_INSTALL = "apt-get install -y spamassassin"
# The rules Debian's package ships (4.0.1's, in 4.0.1-1~deb12u1). Without --configpath,
# spamassassin prefers /var/lib/spamassassin/<version>/ once it exists: a successful sa-update
# swaps in that day's rules and scores, and a failed one (no route to the update mirror)
# leaves the folder empty and every check dies with "no rules were found". Either way the
# figures would move with no change here.
PACKAGED_RULES = Path("/usr/share/spamassassin")
# Local rules only (-L: no DNS blocklists, Razor, Pyzor, DCC), no Bayes and no learning, so a
# score depends on the message and the installed rule set alone. The two headers carry the
# result in a form meant to be read back; the -t report's table wraps descriptions.
_SPAMASSASSIN_CONFIG = (
    "use_bayes 0",
    "bayes_auto_learn 0",
    "report_safe 0",
    "add_header all NlScore _SCORE_",
    "add_header all NlTests _TESTSSCORES(,)_",
)


def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found is None:
        missing("spamassassin", SPAMASSASSIN_INSTALL)
    return found


def spam_report(message: bytes) -> tuple[float, dict[str, float]]:
    """SpamAssassin's score of a message and the rules it hit, with their points."""
    command = [spamassassin(), "-L", "-x"]
    if (PACKAGED_RULES / "50_scores.cf").exists():
        command += ["--configpath", str(PACKAGED_RULES)]
    for line in _SPAMASSASSIN_CONFIG:
        command += ["--cf", line]
    # A HOME of its own: spamassassin would otherwise make ~/.spamassassin/ and read the
    # user_prefs of whoever runs the tests.
    with tempfile.TemporaryDirectory(prefix="newsletter-sa-") as home:
        result = subprocess.run(
            command,
            input=message,
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, "HOME": home},
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    head = result.stdout.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode(errors="replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
    score = re.search(r"^X-Spam-NlScore: *(-?[\d.]+)", unfolded, re.MULTILINE)
    tests = re.search(r"^X-Spam-NlTests: *(.*)$", unfolded, re.MULTILINE)
    assert score, f"no score in spamassassin's output:\n{head[:3000]}"
    assert tests, f"no rules in spamassassin's output:\n{head[:3000]}"
    rules: dict[str, float] = {}
    for item in re.split(r"[,\s]+", tests.group(1).strip()):
        if item and item != "none":
            name, _, points = item.partition("=")
            rules[name] = float(points)
    return float(score.group(1)), rules


def from_markup(rule: str) -> bool:
    """A SpamAssassin rule our HTML can trigger (MARKUP_RULES), but for HTML_MESSAGE."""
    return rule not in EVERY_HTML_MESSAGE and any(
        fnmatchcase(rule, pattern) for pattern in MARKUP_RULES
    )
