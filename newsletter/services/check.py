"""The preflight: what `send` would send now (or the last sent digest, when nothing is new),
checked offline and, unless told not to, with every link fetched (`preflight`); and the
offline part alone, which `send` runs before a new digest leaves draft (`before_send`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from html import escape as escape_html
from typing import TYPE_CHECKING

from newsletter.check.findings import ISSUE, Finding, count, note
from newsletter.check.links import LinkLimits, LinkResult, Progress, check_links
from newsletter.check.offline import Issue, check_offline, links_of
from newsletter.digest.view import DigestView
from newsletter.errors import NewsletterError
from newsletter.render.templating import RenderedDigest, archive_url
from newsletter.send.message import PreparedMessage
from newsletter.services.desk import short_id

if TYPE_CHECKING:
    from newsletter.app import Newsletter


@dataclass(frozen=True)
class CheckReport:
    list_slug: str
    digest_id: int
    subject: str
    findings: tuple[Finding, ...]
    links: int | None  # distinct URLs fetched; None: the links were not fetched
    sent_at: datetime | None = None  # nothing new: this is the last digest, sent then

    @property
    def errors(self) -> int:
        return count(self.findings, "error")

    @property
    def warnings(self) -> int:
        return count(self.findings, "warning")

    @property
    def notes(self) -> int:
        return count(self.findings, "note")


class CheckService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def preflight(
        self,
        slug: str,
        *,
        links: bool = True,
        limits: LinkLimits | None = None,
        progress: Progress | None = None,
    ) -> CheckReport | None:
        """Check the list's next digest (or, when nothing is new, its last one); None when the
        list never had a digest and nothing is new. `progress` hears of each link fetched."""
        current = self.app.digests.draft(slug, or_last_sent=True)
        if current is None:
            return None
        view, sent = current.view, current.sent_at is not None
        issue = self._issue(view, current.rendered, current.message)
        findings = check_offline(issue, self.app.settings)
        fetched = None
        if links:
            urls, about = self._links(issue, view, sent=sent)
            results = check_links(urls, limits or LinkLimits(), progress)
            findings += about
            findings += _grouped([_finding(result, issue) for result in results if not result.ok])
            fetched = len(results)
        order = {"error": 0, "warning": 1, "note": 2}
        findings.sort(key=lambda finding: order[finding.level])  # stable: stories stay in order
        return CheckReport(slug, view.id, view.subject, tuple(findings), fetched, current.sent_at)

    def before_send(
        self, slug: str, view: DigestView, rendered: RenderedDigest, message: PreparedMessage
    ) -> None:
        """Refuse (NewsletterError) a digest with an error the offline check finds."""
        issue = self._issue(view, rendered, message)
        errors = [f for f in check_offline(issue, self.app.settings) if f.level == "error"]
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise NewsletterError(
                f"digest {view.id} of {slug} not sent: {first.story}: {first.text}{more}; "
                f"see `newsletter check --list {slug}`; to send it anyway: "
                f"`newsletter send --list {slug} --force`"
            )

    def _issue(self, view: DigestView, rendered: RenderedDigest, message: PreparedMessage) -> Issue:
        """The digest as the preview's sample reader gets it."""
        sample = self.app.digests.sample_recipient()
        stories: dict[str, str] = {}
        for briefing in view.briefings:
            label = f"{short_id(briefing.id)} “{briefing.title}”"
            for url in (briefing.url, *(source.url for source in briefing.sources)):
                if url:
                    stories.setdefault(url, label)
        return Issue(
            rendered.subject,
            rendered.preheader,
            message.markers.fill(rendered.html, sample, escape_html),
            message.render(sample),
            stories,
        )

    def _links(
        self, issue: Issue, view: DigestView, *, sent: bool
    ) -> tuple[list[str], list[Finding]]:
        """The URLs to fetch, and notes on the ones that cannot be fetched as they are."""
        publication = self.app.settings.publication
        sample = self.app.digests.sample_recipient()
        # List-Unsubscribe leads where the footer's link does: fetched even with no such link.
        urls = list(dict.fromkeys([*links_of(issue.html), sample.unsubscribe_url]))
        about: list[Finding] = []
        edition = archive_url(self.app.settings, view.id)
        if not sent and edition in urls:
            # Before it is sent, the issue's web edition is not there to answer.
            urls[urls.index(edition)] = publication.base_url + "/archive"
            about.append(
                note(
                    f"the web edition {edition} exists once the issue is sent: "
                    f"checked {publication.base_url}/archive instead"
                )
            )
        own = [url for url in (sample.unsubscribe_url, sample.preferences_url) if url in urls]
        if own:
            about.append(
                note(
                    "each reader's unsubscribe and preferences links are signed for them: "
                    f"checked the preview's sample reader's, {' and '.join(own)}"
                )
            )
        return list(dict.fromkeys(urls)), about


def _finding(result: LinkResult, issue: Issue) -> Finding:
    assert result.level is not None
    story = issue.stories.get(result.url, ISSUE)
    return Finding(result.level, story, f"{result.url} {result.problem}")


def _grouped(findings: list[Finding]) -> list[Finding]:
    """One line for every link to a host that does not resolve (offline, or a made-up
    domain), not one per link: the editor fixes the host once."""
    unresolved: dict[str, list[Finding]] = {}
    kept: list[Finding] = []
    for finding in findings:
        match = re.search(r"cannot be reached: (\S+) does not resolve", finding.text)
        if match:
            unresolved.setdefault(match.group(1), []).append(finding)
        else:
            kept.append(finding)
    for host, same in unresolved.items():
        if len(same) == 1:
            kept.append(same[0])
            continue
        stories = sorted({finding.story for finding in same})
        kept.append(
            replace(
                same[0],
                story=stories[0] if len(stories) == 1 else "the issue",
                text=f"{host} does not resolve: {len(same)} links cannot be reached "
                "(offline? `--offline` checks the rest)",
            )
        )
    return kept
