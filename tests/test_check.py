"""`newsletter check`: the offline checks on crafted issues, DKIM with a real key, the link
checker against real HTTP servers on 127.0.0.1, and the preflight through the CLI and `send`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from newsletter.check.findings import Finding
from newsletter.check.links import LinkLimits, check_links
from newsletter.check.offline import Issue, check_offline, links_of
from newsletter.config import Settings, load_settings
from newsletter.config_sections import Dkim
from newsletter.personalize import Markers, Recipient
from newsletter.send.dkim import SIGNED_HEADERS
from newsletter.send.message import PreparedMessage
from tests.certs import make_dkim_key
from tests.conftest import Project

# -- a real HTTP server ------------------------------------------------------------------------


@dataclass
class LinkServer:
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        return sum(1 for _, requested in self.requests if requested == path)


def _handler(state: LinkServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """/missing*: 404; /moved*: 302 to /ok; /nohead*: 405 to HEAD; /hang*: never
        answers; anything else: 200."""

        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def handle(self) -> None:
            with suppress(ConnectionError):  # the checker hangs up on a body it does not read
                super().handle()

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, *, head: bool) -> None:
            state.requests.append((self.command, self.path))
            path = self.path
            if path.startswith("/hang"):
                state.release.wait(30)
                return None
            if path.startswith("/missing"):
                return self._reply(404, head)
            if path.startswith("/moved"):
                return self._reply(302, head, {"Location": "/ok"})
            if path.startswith("/nohead") and head:
                return self._reply(405, head, {"Allow": "GET"})
            return self._reply(200, head)

        def _reply(self, code: int, head: bool, headers: dict[str, str] | None = None) -> None:
            body = b"<!doctype html><title>page</title>" * 100
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler


@pytest.fixture
def link_server() -> Iterator[LinkServer]:
    state = LinkServer(0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


# -- the link checker --------------------------------------------------------------------------


def test_links_answer_200_404_redirect_head_refused_and_one_never_answers(
    link_server: LinkServer,
) -> None:
    urls = [link_server.url(path) for path in ("/ok", "/missing", "/moved", "/nohead", "/hang")]
    started = time.monotonic()
    results = check_links([*urls, urls[1]], LinkLimits(concurrency=4, per_url=1.5, total=20))
    elapsed = time.monotonic() - started
    by_url = {result.url: result for result in results}
    assert [result.url for result in results] == urls  # each URL once, in order
    assert by_url[urls[0]].ok
    assert by_url[urls[0]].status == 200
    assert by_url[urls[1]].level == "error"
    assert by_url[urls[1]].problem == "answered 404"
    assert by_url[urls[2]].ok
    assert by_url[urls[2]].final_url == link_server.url("/ok")
    assert by_url[urls[3]].ok
    assert by_url[urls[3]].status == 200
    assert by_url[urls[4]].level == "error"
    assert by_url[urls[4]].problem == "did not answer within 1.5 s"
    assert elapsed < 10, elapsed  # the hang is bounded by its deadline (1.5 s), not by 30 s
    assert link_server.count("/missing") == 2  # one HEAD, one GET: a 404 to HEAD is retried
    assert ("HEAD", "/nohead") in link_server.requests
    assert ("GET", "/nohead") in link_server.requests
    assert ("GET", "/ok") not in link_server.requests  # HEAD was enough


def test_the_whole_check_keeps_its_total_deadline(link_server: LinkServer) -> None:
    urls = [link_server.url(f"/hang/{n}") for n in range(6)]
    started = time.monotonic()
    results = check_links(urls, LinkLimits(concurrency=2, per_url=5, total=1.5))
    assert time.monotonic() - started < 6
    assert all(result.level == "error" for result in results)
    assert any("1.5 s ran out" in result.problem for result in results)


def test_an_unreachable_link_is_a_finding_not_a_crash() -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/nothing-listens"
    (result,) = check_links([url], LinkLimits(per_url=2, total=5))
    assert result.level == "error"
    assert result.problem.startswith("cannot be reached")


# -- offline checks ----------------------------------------------------------------------------

SAMPLE = Recipient(
    0,
    "reader@example.com",
    "",
    "https://signaldesk.example/unsubscribe/preview",
    "https://signaldesk.example/subscribe",
)
GOOD_HTML = (
    '<!doctype html><html lang="en"><body><div style="display:none">This week: Energy</div>'
    '<h1 id="top">Weekly</h1><a href="#top">back to the top</a>'
    '<h3><a href="https://news.example/a">Grid storage doubles</a></h3>'
    '<img src="https://news.example/chart.png" alt="A chart of storage by year">'
    '<a href="https://signaldesk.example/unsubscribe/preview">Unsubscribe</a></body></html>'
)


def _issue(
    html: str = GOOD_HTML,
    *,
    subject: str = "Weekly: grid storage doubles",
    preheader: str = "This week: Energy",
    text: str = "Weekly\n\nGrid storage doubles\n",
    mailto: str | None = None,
    raw: bytes | None = None,
) -> Issue:
    message = PreparedMessage(
        sender="SignalDesk <briefings@signaldesk.example>",
        subject=subject,
        text=text,
        html_body=html,
        list_id="Weekly <weekly.signaldesk.example>",
        message_id_domain="signaldesk.example",
        markers=Markers("abc123"),
        unsubscribe_mailto=mailto,
    )
    stories = {"https://news.example/a": "b7 “Grid storage doubles”"}
    return Issue(subject, preheader, html, raw or message.render(SAMPLE), stories)


@pytest.fixture
def settings(project: Project) -> Settings:
    return load_settings(project.config_path)


def _with(settings: Settings, **publication: object) -> Settings:
    return settings.model_copy(
        update={"publication": settings.publication.model_copy(update=publication)}
    )


def _lines(findings: list[Finding]) -> list[str]:
    return [finding.line for finding in findings]


def test_a_clean_issue_has_no_findings(settings: Settings) -> None:
    assert check_offline(_issue(), settings) == []
    assert links_of(GOOD_HTML) == [
        "https://news.example/a",
        "https://signaldesk.example/unsubscribe/preview",
    ]


def _crafted(*, text: bool = True, unsubscribe: bool = True, post: bool = True) -> bytes:
    """A message built whole by the email package, with or without its text part and the
    List-Unsubscribe headers."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = "SignalDesk <briefings@signaldesk.example>"
    message["Subject"] = "Weekly"
    if unsubscribe:
        message["List-Unsubscribe"] = "<https://signaldesk.example/unsubscribe/preview>"
    if post:
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if text:
        message.set_content("Weekly")
        message.add_alternative(GOOD_HTML, subtype="html")
    else:
        message.set_content(GOOD_HTML, subtype="html")
    return message.as_bytes()


# A change to the clean HTML, and how the one finding it makes begins.
BIG = "<p>" + "x" * 110_000 + "</p></body>"
NEAR = "<p>" + "x" * 95_000 + "</p></body>"
B7 = "b7 “Grid storage doubles”"
HTML_EDITS = {
    "clipped": ("</body>", BIG, "error   the issue: the HTML is 107.8 KB: Gmail clips"),
    "near the clip": ("</body>", NEAR, "warning the issue: the HTML is 93.1 KB, close to"),
    "image without alt": (' alt="A chart of storage by year"', "", "warning the issue: an image"),
    "no lang": (' lang="en"', "", "warning the issue: <html> has no lang"),
    "vague link text": (">Grid storage doubles</a>", ">Click here</a>", f"warning {B7}: the link"),
    "bare URL": (">Grid storage doubles<", ">https://news.example/a<", f"warning {B7}: a bare URL"),
    "anchor to nowhere": ('href="#top"', 'href="#gone"', "warning the issue: the link to #gone"),
}
# An issue made otherwise, the [publication] settings changed, and the one finding.
Make = Callable[[], Issue]
OTHER_CASES: dict[str, tuple[Make, dict[str, object], str]] = {
    "long subject": (
        lambda: _issue(subject="A" * 100),
        {},
        "warning the issue: the subject is 100",
    ),
    "very long subject": (lambda: _issue(subject="A" * 151), {}, "error   the issue: the subject"),
    "no preheader": (lambda: _issue(preheader=""), {}, "warning the issue: no preheader"),
    "stray preheader": (lambda: _issue(preheader="Else"), {}, "warning the issue: the preheader"),
    "no text part": (lambda: _issue(raw=_crafted(text=False)), {}, "error   the issue: no text"),
    "no List-Unsubscribe": (
        lambda: _issue(raw=_crafted(unsubscribe=False, post=False)),
        {},
        "error   the issue: no List-Unsubscribe header",
    ),
    "no Post": (lambda: _issue(raw=_crafted(post=False)), {}, "error   the issue: no List-Unsub"),
    "no mailto": (_issue, {"unsubscribe_mailto": "u@x.example"}, "error   the issue: List-Unsub"),
    "http": (_issue, {"base_url": "http://x.example"}, "warning the issue: [publication] base"),
    "http here": (_issue, {"base_url": "http://127.0.0.1:8000"}, "note    the issue: [publicat"),
}


@pytest.mark.parametrize("case", [*HTML_EDITS, *OTHER_CASES])
def test_each_offline_finding_fires(settings: Settings, case: str) -> None:
    if case in HTML_EDITS:
        old, new, expected = HTML_EDITS[case]
        assert old in GOOD_HTML
        issue, publication = _issue(GOOD_HTML.replace(old, new)), {}
    else:
        make, publication, expected = OTHER_CASES[case]
        issue = make()
    lines = _lines(check_offline(issue, _with(settings, **publication)))
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines


def test_http_list_unsubscribe_off_this_machine_is_an_error(settings: Settings) -> None:
    issue = _issue()
    raw = issue.message.replace(b"<https://signaldesk", b"<http://signaldesk")
    local = Issue(issue.subject, issue.preheader, issue.html, raw, issue.stories)
    lines = _lines(check_offline(local, settings))
    assert lines == [
        "error   the issue: List-Unsubscribe is http, one-click unsubscribe needs https: "
        "<http://signaldesk.example/unsubscribe/preview>"
    ]
    mailto = _issue(mailto="unsubscribe@signaldesk.example")
    configured = _with(settings, unsubscribe_mailto="unsubscribe@signaldesk.example")
    assert check_offline(mailto, configured) == []


# -- DKIM with a real key ----------------------------------------------------------------------


def _dkim(settings: Settings, key: Path, domain: str = "signaldesk.example") -> Settings:
    return settings.model_copy(
        update={"dkim": Dkim(domain=domain, selector="nl2026", key_file=key)}
    )


def test_dkim_key_loads_signature_covers_list_unsubscribe_and_from_aligns(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "dkim.pem"
    make_dkim_key(key)
    assert check_offline(_issue(), _dkim(settings, key)) == []
    assert _lines(check_offline(_issue(), _dkim(settings, key, "mail.signaldesk.example"))) == [
        "note    the issue: From's domain signaldesk.example and the DKIM domain "
        "d=mail.signaldesk.example align only under relaxed alignment (DMARC's default)"
    ]
    (misaligned,) = _lines(check_offline(_issue(), _dkim(settings, key, "other.example")))
    assert misaligned.startswith(
        "error   the issue: From's domain signaldesk.example does not align with the DKIM "
        "domain d=other.example"
    )
    # dkimpy lists even absent headers in h= (so that none can be added): only a signer told
    # to leave one out leaves it uncovered.
    monkeypatch.setattr(
        "newsletter.send.dkim.SIGNED_HEADERS",
        tuple(h for h in SIGNED_HEADERS if not h.startswith(b"List-Unsubscribe")),
    )
    (uncovered,) = _lines(check_offline(_issue(), _dkim(settings, key)))
    assert uncovered.startswith(
        "error   the issue: the DKIM signature does not cover List-Unsubscribe and "
        "List-Unsubscribe-Post"
    )


def test_a_dkim_key_that_does_not_load_is_an_error(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    (line,) = _lines(check_offline(_issue(), _dkim(settings, broken)))
    assert line.startswith("error   the issue: [dkim]: ")
    assert "broken.pem" in line
    (missing,) = _lines(check_offline(_issue(), _dkim(settings, tmp_path / "absent.pem")))
    assert "cannot read the DKIM key" in missing


# -- through the CLI ---------------------------------------------------------------------------


def _local_publication(project: Project, server: LinkServer) -> None:
    """The project's feed replaced by three stories on `server`: one link that answers, one
    that redirects to a page that does, one broken; the publication's own pages there too."""
    items = "".join(
        f"<item><title>{title}</title><guid>story-{n}</guid><link>{server.url(path)}</link>"
        f'<category>energy</category><source url="{server.url(f"/src/{n}")}">Grid Weekly'
        f"</source><description>{title}, in brief.</description></item>"
        for n, (title, path) in enumerate(
            (
                ("Grid storage doubles", "/ok/storage"),
                ("Solar tariffs fall", "/moved/tariffs"),
                ("Wind farm approved", "/missing/wind"),
            )
        )
    )
    feed = project.folder / "samples" / "briefings.xml"
    feed.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>Grid</title><link>{server.url('/')}</link><description>d</description>"
        f"{items}</channel></rss>"
    )
    project.update("publication", base_url=server.url(""), standards_url=server.url("/standards"))
    project.cli("fetch")


def test_check_names_the_broken_story_and_passes_once_it_is_dropped(
    project: Project, link_server: LinkServer
) -> None:
    _local_publication(project, link_server)
    output = project.cli("check", "--list", "weekly", expect=1).output
    broken = re.findall(r"^error +(b\d+) “Wind farm approved”: (\S+) answered 404$", output, re.M)
    assert broken == [(broken[0][0], link_server.url("/missing/wind"))], output
    assert output.count("error ") == 1, output
    assert "checked " + link_server.url("/archive") + " instead" in output
    assert link_server.url("/unsubscribe/preview") in output  # the sample reader's, said so
    assert "1 error" in output
    assert "not ready to send" in output
    assert link_server.count("/ok/storage") == 1  # each URL once
    assert ("HEAD", "/archive") in link_server.requests
    short_id = broken[0][0]
    assert short_id in project.cli("digest", "show", "--list", "weekly").output

    project.cli("digest", "drop", short_id, "--list", "weekly")
    output = project.cli("check", "--list", "weekly", expect=0).output
    assert "Wind farm approved" not in output
    assert "0 errors" in output
    assert "ready to send" in output

    offline = project.cli("check", "--list", "weekly", "--offline").output
    assert "links not fetched (--offline)" in offline


def test_the_sample_digest_passes_the_offline_check(project: Project) -> None:
    project.cli("fetch")
    output = project.cli("check", "--list", "weekly", "--offline").output
    assert "0 errors" in output, output


def test_send_refuses_a_digest_with_an_offline_error_unless_forced(project: Project) -> None:
    make_dkim_key(project.folder / "dkim.pem")
    data = project.config()
    data["dkim"] = {"domain": "other.example", "selector": "nl2026", "key_file": "dkim.pem"}
    project.write_config(data)
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    refused = project.cli("send", "--list", "weekly", "--yes", expect=1).output
    assert (
        "digest 1 of weekly not sent: the issue: From's domain signaldesk.example does not "
        "align with the DKIM domain d=other.example" in " ".join(refused.split())
    )
    assert "to send it anyway: `newsletter send --list weekly --force`" in " ".join(refused.split())
    assert project.outbox() == []
    assert "Next digest of weekly" in project.cli("digest", "show", "--list", "weekly").output

    sent = project.cli("send", "--list", "weekly", "--yes", "--force").output
    assert "Sent digest" in sent
    assert len(project.outbox()) == 6

    # Nothing new now: the check is of the digest that went out, and still finds its error.
    after = project.cli("check", "--list", "weekly", "--offline", expect=1).output
    assert "Nothing new since the last digest of weekly: checked that digest" in after
    assert re.search(r"Digest \d+ “", after)  # PostgreSQL skips the rolled-back id
    assert "(sent)" in after


def test_links_to_a_host_that_does_not_resolve_are_one_line() -> None:
    from newsletter.check.findings import Finding
    from newsletter.services.check import _grouped

    lost = [
        Finding("error", f"b{n} “Story {n}”", f"https://gone.example/{n} cannot be reached: "
                "gone.example does not resolve")
        for n in range(15)
    ]  # fmt: skip
    other = Finding("error", "b99 “Other”", "https://ok.example/x answered 404")
    grouped = _grouped([*lost, other])
    assert len(grouped) == 2
    assert grouped[0] == other
    assert grouped[1].text.startswith("gone.example does not resolve: 15 links cannot be reached")
    assert grouped[1].story == "the issue"
