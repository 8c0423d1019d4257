"""The reader's front door, in process: home and signup pages, the bot gate (honeypot, signed
one-use form tokens, timing, rate limits, proof of work), confirming by a button, the standards
page. Mail goes to the project's real Maildir outbox; the clock is the app's, moved by hand."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.models import ConsentEvent, Subscriber, Subscription, SubscriptionStatus
from newsletter.web.app import create_app
from tests.conftest import Project

CLIENT = ("203.0.113.77", 50123)
WEEKLY = "The Weekly Briefing"


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Site:
    project: Project
    app: Newsletter
    client: TestClient
    clock: Clock

    def form(self, path: str = "/subscribe") -> dict[str, str]:
        """The hidden fields of the signup form on a page, as a browser would send them."""
        page = self.client.get(path)
        assert page.status_code == 200
        return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))

    def sign_up(self, email: str, wait: float = 3, **extra: Any) -> Any:
        fields: dict[str, Any] = {**self.form(), "email": email, "website": "", **extra}
        self.clock.advance(wait)
        return self.client.post("/subscribe", data=fields)

    def confirmations(self) -> list[EmailMessage]:
        return [m for m in self.project.outbox() if "Confirm" in str(m["Subject"])]

    def subscription(self, email: str) -> Subscription | None:
        with self.app.session() as session:
            reader = session.exec(select(Subscriber).where(Subscriber.email == email)).first()
            if reader is None:
                return None
            return session.exec(
                select(Subscription).where(Subscription.subscriber_id == reader.id)
            ).first()


def start(project: Project, **client: Any) -> Iterator[Site]:
    clock = Clock()
    app = Newsletter(load_settings(project.config_path), clock=clock)
    with TestClient(create_app(app), client=CLIENT, **client) as test_client:
        yield Site(project, app, test_client, clock)


@pytest.fixture
def site(project: Project) -> Iterator[Site]:
    yield from start(project)


def confirm_path(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    link = re.search(r"https://signaldesk\.example(/confirm/\S+)", body.get_content())
    assert link, body.get_content()
    return link.group(1)


def test_home_shows_the_publication_its_signup_form_and_latest_issues(project: Project) -> None:
    project.update("publication", description="Five minutes on what changed this week.")
    for site in start(project):
        home = site.client.get("/")
        assert home.status_code == 200
        assert "<h1>SignalDesk Weekly</h1>" in home.text
        assert "Five minutes on what changed this week." in home.text
        assert '<form method="post" action="/subscribe"' in home.text
        assert 'type="email"' in home.text
        assert 'name="list" value="weekly"' in home.text  # one list: chosen for the reader
        assert 'type="checkbox" name="list"' not in home.text
        assert "The first issue has not been sent yet." in home.text
        assert 'name="theme" value="Security"' in home.text
        assert home.headers["cache-control"] == "no-store"  # each form has its own token
        assert "script-src" not in home.headers["content-security-policy"]
        assert site.client.get("/subscribe").status_code == 200


def test_several_public_lists_are_offered_and_a_private_one_is_not(project: Project) -> None:
    data = project.config()
    data["lists"] += [
        {"slug": "daily", "name": "The Daily Note", "description": "Every weekday."},
        {"slug": "staff", "name": "Staff only", "public": False},
    ]
    project.write_config(data)
    for site in start(project):
        page = site.client.get("/subscribe").text
        assert 'type="checkbox" name="list" value="weekly"' in page
        assert 'type="checkbox" name="list" value="daily"' in page
        assert "Every weekday." in page
        assert "staff" not in page
        answer = site.sign_up("ada@example.com", list=["daily", "staff"])
        assert "Check your inbox" in answer.text
        (mail,) = site.confirmations()
        assert str(mail["Subject"]) == "Confirm your subscription to The Daily Note"
        nothing_chosen = site.sign_up("bob@example.com")
        assert "Choose at least one list." in nothing_chosen.text
        assert len(site.confirmations()) == 1


def test_the_answer_is_the_same_whoever_the_address_belongs_to(site: Site) -> None:
    site.project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    site.project.cli("subscribers", "forget", "zoe@example.com", "--yes")
    tried = [
        "new@example.com",  # new
        "new@example.com",  # pending, mailed a moment ago
        "grace@example.com",  # subscribed already
        "zoe@example.com",  # forgotten on request
    ]
    visible = []
    for address in tried:
        page = re.search(r"<main>(.*)</main>", site.sign_up(address).text, re.S)
        assert page
        visible.append(page.group(1).replace(address, "ADDRESS"))
    assert len(set(visible)) == 1
    assert "Check your inbox" in visible[0]
    assert "We sent a message with a button to confirm to ADDRESS" in visible[0]
    assert [str(m["To"]) for m in site.confirmations()] == ["new@example.com"]


def test_a_web_signup_is_confirmed_by_mail_even_on_a_list_without_double_opt_in(
    site: Site,
) -> None:
    assert site.app.settings.mailing_list("weekly").double_opt_in is False
    site.sign_up("grace@example.com", name="Cheap pills at spam.example", theme=["Security"])
    subscription = site.subscription("grace@example.com")
    assert subscription is not None
    assert subscription.status == SubscriptionStatus.PENDING
    assert subscription.origin == "web"
    (mail,) = site.confirmations()
    raw = mail.as_string()
    assert "Cheap pills" not in raw  # only the address is the visitor's
    assert "spam.example" not in raw
    assert "grace@example.com" in raw


def test_the_confirmation_link_shows_a_button_and_only_the_post_confirms(site: Site) -> None:
    site.sign_up("linus@example.com", theme=["Security", "Energy"])
    path = confirm_path(site.confirmations()[0])
    page = site.client.get(path)
    assert page.status_code == 200
    assert '<button type="submit">Confirm my subscription</button>' in page.text
    assert site.client.head(path).status_code == 200
    subscription = site.subscription("linus@example.com")
    assert subscription is not None
    assert subscription.status == SubscriptionStatus.PENDING  # scanners fetch, nobody confirms
    done = site.client.post(path)
    assert "You are subscribed to The Weekly Briefing." in done.text
    assert "/preferences/" in done.text
    subscription = site.subscription("linus@example.com")
    assert subscription is not None
    assert subscription.status == SubscriptionStatus.ACTIVE
    again = site.client.post(path)
    assert "You are already subscribed" in again.text
    assert "Confirm my subscription" not in site.client.get(path).text  # no idle button
    with site.app.session() as session:
        linus = select(Subscriber).where(Subscriber.email == "linus@example.com")
        reader = session.exec(linus).one()
        assert reader.themes == ["Security", "Energy"]
        history = session.exec(
            select(ConsentEvent).where(ConsentEvent.subscriber_id == reader.id)
        ).all()
    assert [(e.action, e.origin, e.page, e.client) for e in history] == [
        ("signup", "web", "/subscribe", "203.0.113.0/24"),
        ("confirm", "web", path, "203.0.113.0/24"),
    ]


def test_tampered_and_foreign_confirmation_links_answer_400(site: Site) -> None:
    site.sign_up("margaret@example.com")
    path = confirm_path(site.confirmations()[0])
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    for bad in (tampered, "/confirm/abc", "/confirm/" + "x" * 300):
        assert site.client.get(bad).status_code == 400
        assert site.client.post(bad).status_code == 400


def test_a_bare_post_a_honeypot_and_a_forged_token_mail_nobody(site: Site) -> None:
    bare = site.client.post("/subscribe", data={"email": "victim@example.com"})
    assert "Check your inbox" in bare.text  # a script learns nothing
    trapped = site.sign_up("victim2@example.com", website="https://spam.example")
    assert "Check your inbox" in trapped.text
    forged = site.client.post(
        "/subscribe",
        data={"email": "victim3@example.com", "form_token": "MTIzLjQ1Ng.AAAAAAAAAAAAAAAAAAAAAA"},
    )
    assert "Check your inbox" in forged.text
    empty = site.client.post("/subscribe", content=b"", headers={"content-type": "text/plain"})
    assert empty.status_code == 400
    assert site.confirmations() == []
    assert site.subscription("victim@example.com") is None


def test_30_replays_of_one_submission_mail_only_the_first(site: Site) -> None:
    fields = site.form()
    site.clock.advance(3)
    for number in range(30):
        site.client.post("/subscribe", data={**fields, "email": f"reader{number}@example.com"})
    assert [str(m["To"]) for m in site.confirmations()] == ["reader0@example.com"]


def test_a_form_sent_faster_than_a_person_or_a_day_later_is_refused_with_a_fresh_form(
    site: Site,
) -> None:
    fast = site.sign_up("quick@example.com", wait=0.5)
    assert "quicker than we expected" in fast.text
    assert 'value="quick@example.com"' in fast.text  # what they typed is kept
    stale = site.sign_up("slow@example.com", wait=25 * 3600)
    assert "open for a long time" in stale.text
    assert site.confirmations() == []
    assert "Check your inbox" in site.sign_up("quick@example.com").text
    assert len(site.confirmations()) == 1


def test_signups_are_limited_per_client_network_and_per_mail_domain(project: Project) -> None:
    project.update("signup", per_client_per_hour=3, per_domain_per_hour=4)
    for site in start(project):
        answers = [site.sign_up(f"r{n}@one.example").status_code for n in range(4)]
        assert answers == [200, 200, 200, 429]  # the fourth from one client
        site.client = TestClient(site.client.app, client=("198.51.100.2", 1))
        assert site.sign_up("s0@one.example").status_code == 200  # the domain's fourth
        limited = site.sign_up("s1@one.example")  # the domain's fifth
        assert limited.status_code == 429
        assert "Too many signups" in limited.text
        assert site.sign_up("t@two.example").status_code == 200
    mailed = {str(m["To"]) for m in project.outbox()}
    assert mailed == {"r0@one.example", "r1@one.example", "r2@one.example", "s0@one.example",
                      "t@two.example"}  # fmt: skip


def test_the_proof_of_work_is_required_when_on_and_bound_to_its_form(project: Project) -> None:
    from altcha.v1 import Challenge, Payload, solve_challenge

    project.update("signup", proof_of_work=True, proof_of_work_max=2000)
    for site in start(project):
        page = site.client.get("/subscribe")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/static/signup.js" defer></script>' in page.text
        script = site.client.get("/static/signup.js")
        assert script.status_code == 200
        assert "crypto.subtle.digest" in script.text
        unsolved = site.sign_up("nopow@example.com")  # no script ran: a person is told why
        assert "This form needs JavaScript" in unsolved.text
        forged = site.sign_up("nopow@example.com", altcha="eyJhIjogMX0=")
        assert "Check your inbox" in forged.text

        def solved_form(site: Site = site) -> tuple[dict[str, str], str]:
            html = site.client.get("/subscribe").text
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
            raw = re.search(r'data-challenge="([^"]+)"', html).group(1)  # type: ignore[union-attr]
            data = __import__("json").loads(__import__("html").unescape(raw))
            challenge = Challenge(
                data["algorithm"],
                data["challenge"],
                data["maxNumber"],
                data["salt"],
                data["signature"],
            )
            solution = solve_challenge(challenge.challenge, challenge.salt, "SHA-256", 2000, 0)
            assert solution is not None
            payload = Payload(
                "SHA-256", challenge.challenge, solution.number, challenge.salt,
                challenge.signature,
            )  # fmt: skip
            return fields, payload.to_base64()

        fields, proof = solved_form()
        site.clock.advance(3)
        good = {**fields, "email": "pow@example.com", "altcha": proof}
        assert "Check your inbox" in site.client.post("/subscribe", data=good).text
        other_fields, _ = solved_form()  # the same proof on another form
        site.clock.advance(3)
        reused = {**other_fields, "email": "reuse@example.com", "altcha": proof}
        site.client.post("/subscribe", data=reused)
        assert [str(m["To"]) for m in site.confirmations()] == ["pow@example.com"]


def test_a_pending_address_is_mailed_again_at_most_once_a_day(site: Site) -> None:
    for _ in range(3):
        site.sign_up("again@example.com")
    assert len(site.confirmations()) == 1
    site.clock.advance(25 * 3600)
    site.sign_up("again@example.com")
    assert len(site.confirmations()) == 2


def test_unconfirmed_signups_expire_and_are_purged(site: Site) -> None:
    site.sign_up("never@example.com")
    site.clock.advance(3600)
    site.sign_up("later@example.com")
    assert site.subscription("never@example.com") is not None
    site.clock.advance((site.app.settings.security.confirm_link_days + 1) * 86400)
    site.sign_up("trigger@example.com")  # signups sweep out the expired ones
    assert site.subscription("never@example.com") is None
    assert site.subscription("later@example.com") is None
    assert site.subscription("trigger@example.com") is not None
    assert site.app.subscribers.record("never@example.com") is None


def test_who_left_may_sign_up_again_and_a_bounced_address_is_never_mailed(site: Site) -> None:
    site.project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    site.project.cli("subscribers", "remove", "ada@example.com", "--list", "weekly")
    with site.app.session() as session:
        query = select(Subscriber).where(Subscriber.email == "grace@example.com")
        grace = session.exec(query).one()
        grace.status = "bounced"  # type: ignore[assignment]
        session.add(grace)
        session.commit()
    site.sign_up("ada@example.com")
    site.sign_up("grace@example.com")
    assert [str(m["To"]) for m in site.confirmations()] == ["ada@example.com"]
    subscription = site.subscription("ada@example.com")
    assert subscription is not None
    assert subscription.status == SubscriptionStatus.PENDING
    site.client.post(confirm_path(site.confirmations()[0]))
    subscription = site.subscription("ada@example.com")
    assert subscription is not None
    assert subscription.status == SubscriptionStatus.ACTIVE


def test_the_standards_page_is_served_from_the_editors_markdown(site: Site) -> None:
    starter = site.client.get("/standards")
    assert starter.status_code == 200
    assert "SignalDesk Weekly is a weekly digest" in starter.text  # the starter, named
    (site.project.folder / "standards.md").write_text(
        "# How we work\n\nWe *check* every claim.\n\n<script>alert(1)</script>\n",
        encoding="utf-8",
    )
    page = site.client.get("/standards")
    assert "<h1>How we work</h1>" in page.text
    assert "<em>check</em>" in page.text
    assert "<script>alert" not in page.text
    assert 'href="/standards"' in page.text  # the nav links our own page, not base_url's


def test_a_standards_url_on_another_site_is_linked_not_served(project: Project) -> None:
    project.update("publication", standards_url="https://example.org/our-standards")
    for site in start(project):
        assert site.client.get("/standards").status_code == 404
        assert 'href="https://example.org/our-standards"' in site.client.get("/").text


def test_an_unknown_page_is_a_styled_404_that_leads_home(site: Site) -> None:
    missing = site.client.get("/no/such/page")
    assert missing.status_code == 404
    assert "There is no page here" in missing.text
    assert 'href="/"' in missing.text
    assert urlsplit(str(missing.url)).path == "/no/such/page"


def test_a_confirmation_that_cannot_be_mailed_says_so_and_the_next_try_mails_it(
    site: Site,
) -> None:
    from newsletter.errors import TransportError

    def smtp_down(pending: list[Any]) -> int:
        raise TransportError("cannot connect to 127.0.0.1:25")

    site.app.hooks.confirmation_needed = smtp_down
    failed = site.sign_up("patient@example.com")
    assert failed.status_code == 503
    assert "try again in a few minutes" in failed.text
    site.app.hooks.confirmation_needed = None  # the mail server is back
    assert "Check your inbox" in site.sign_up("patient@example.com").text
    assert [str(m["To"]) for m in site.confirmations()] == ["patient@example.com"]


def test_a_confirmation_link_opened_after_leaving_says_so_and_subscribes_nobody(
    site: Site,
) -> None:
    site.sign_up("leaver@example.com")
    path = confirm_path(site.confirmations()[0])
    site.client.post(path)
    site.project.cli("subscribers", "remove", "leaver@example.com", "--list", "weekly")
    for answer in (site.client.get(path), site.client.post(path)):
        assert "You are not subscribed to The Weekly Briefing." in answer.text
        assert "Confirm my subscription" not in answer.text
    subscription = site.subscription("leaver@example.com")
    assert subscription is not None
    assert subscription.status == SubscriptionStatus.UNSUBSCRIBED


def test_serve_warns_while_the_standards_page_is_the_starter(project: Project) -> None:
    from newsletter.services.setup import write_standards_page

    with Newsletter(load_settings(project.config_path)) as app:
        assert "standards.md is missing" in app.readers.warnings()[0]
        written = write_standards_page(app.settings)
        assert written is not None
        assert "is still the starter text" in app.readers.warnings()[0]
        written.write_text("# How the Harbour Letter works\n", encoding="utf-8")
        assert app.readers.warnings() == []


def test_a_subscribed_address_is_mailed_its_preferences_link_at_most_once_a_day(
    site: Site,
) -> None:
    site.project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    for _ in range(3):
        site.sign_up("grace@example.com")
    reminders = [m for m in site.project.outbox() if "You are subscribed" in str(m["Subject"])]
    assert len(reminders) == 1
    assert str(reminders[0]["To"]) == "grace@example.com"
    body = reminders[0].get_body(("plain",))
    assert body is not None
    link = re.search(r"https://signaldesk\.example(/preferences/\S+)", body.get_content())
    assert link
    assert "For grace@example.com" in site.client.get(link.group(1)).text
    subscription = site.subscription("grace@example.com")
    assert subscription is not None
    assert subscription.status == SubscriptionStatus.ACTIVE  # nothing else changed
    site.clock.advance(25 * 3600)
    site.sign_up("grace@example.com")
    assert len([m for m in site.project.outbox() if "You are subscribed" in str(m["Subject"])]) == 2


def test_odd_requests_get_pages_that_say_what_to_do(site: Site) -> None:
    umlaut = site.sign_up("jörg@example.com")
    assert umlaut.status_code == 400
    assert "letters like ö or é before the @" in umlaut.text
    typo = site.sign_up("not an address")
    assert "does not look like an e-mail address" in typo.text
    assert 'value="not an address"' in typo.text
    wrong_method = site.client.put("/subscribe")
    assert wrong_method.status_code == 405
    assert "That cannot be done here" in wrong_method.text
    assert 'type="application/atom+xml"' in site.client.get("/").text
    (site.project.folder / "standards.md").write_text(
        "# Standards\n\n| rule | why |\n|---|---|\n| name sources | so you can check |\n"
    )
    assert "<td>name sources</td>" in site.client.get("/standards").text
    assert site.confirmations() == []
