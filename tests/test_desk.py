"""The editor's desk through the CLI, against a real SMTP server (aiosmtpd on 127.0.0.1):
`digest show` says what goes out, `drop`, `pin` by short id, the note in both parts, approval,
and counts that agree with the mail."""

from __future__ import annotations

import re
from email.message import EmailMessage

from tests.conftest import Project, SmtpServer


def parts(message: EmailMessage) -> tuple[str, str]:
    html, text = message.get_body(("html",)), message.get_body(("plain",))
    assert html is not None
    assert text is not None
    return str(html.get_content()), str(text.get_content()).replace("\r\n", "\n")


def shown(project: Project) -> str:
    return str(project.cli("digest", "show", "--list", "weekly").output)


def short_id_of(show: str, title: str) -> str:
    found = re.search(r"(b\d+)  " + re.escape(title), show)
    assert found, show
    return found.group(1)


def sent(smtp_server: SmtpServer) -> EmailMessage:
    (received,) = smtp_server.received
    return received.message


def test_show_drop_pin_and_note_and_the_mail_says_what_show_said(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    """The issue's "done when": show, drop one story, pin another by short id, a note of two
    paragraphs; the mail that goes out is what `show` said."""
    project = smtp_project
    project.cli("fetch")
    project.cli("subscribers", "add", "editor@example.com", "--list", "weekly")
    before = shown(project)
    dropped = short_id_of(before, "Ransomware attack knocks out billing at Brackwater Water")
    pinned = short_id_of(before, "Freight rates ease on short-sea routes as new vessels arrive")
    assert "the same story: " in before  # the Valdera strike, from two outlets
    project.cli("digest", "drop", dropped, "--list", "weekly")
    project.cli("digest", "pin", pinned, "--list", "weekly")
    note = project.folder / "note.md"
    note.write_text(
        "The ports are open again.\n\nTell us what you think: [write to us]"
        "(https://signaldesk.example/contact), *we read everything*.\n",
        encoding="utf-8",
    )
    project.cli("digest", "note", "--list", "weekly", "--file", str(note))

    plan = shown(project)
    subject = re.search(r"Next digest of weekly: “(.+)”", plan)
    assert subject
    assert "Ransomware attack knocks out billing" not in plan.split("Dropped")[0]
    assert f"{dropped}  Ransomware attack" in plan.split("Dropped")[1]
    assert re.search(rf"Top story · Logistics\n\s+{pinned}  Freight rates ease", plan)
    assert "pinned" in plan
    stories = int(re.search(r"(\d+) stories in the e-mail", plan).group(1))  # type: ignore[union-attr]

    project.cli("send", "--list", "weekly", "--yes")
    message = sent(smtp_server)
    assert str(message["Subject"]) == subject.group(1)
    html, text = parts(message)
    assert "Brackwater" not in html
    assert "Brackwater" not in text
    lead = text.split("== TOP STORY · LOGISTICS ==")[1].split("==")[0]
    assert "Freight rates ease on short-sea routes" in lead
    assert "<p>The ports are open again.</p>" in html
    assert '<a href="https://signaldesk.example/contact"' in html
    assert "<em>we read everything</em>" in html
    assert "The ports are open again.\n\nTell us what you think: write to us" in text
    assert "(https://signaldesk.example/contact)" in text
    titles = len(re.findall(r"<h3[ >]", html))
    assert titles == stories
    assert f"and {stories - 1} more" in subject.group(1)
    assert "Nothing new" in shown(project)  # the pin, the note and the drop were used


def test_a_note_and_a_pin_shape_one_digest_and_a_drop_can_be_undone(project: Project) -> None:
    project.cli("fetch")
    show = shown(project)
    story = short_id_of(show, "Keyfold patches flaw that could expose shared vault entries")
    project.cli("digest", "drop", story, "--list", "weekly")
    assert f"{story}  Keyfold" in shown(project).split("Dropped")[1]
    project.cli("digest", "drop", story, "--list", "weekly", "--undo")
    assert "Dropped" not in shown(project)
    project.cli("digest", "note", "--list", "weekly", "Hello")
    assert "Note: Hello" in shown(project)
    project.cli("digest", "note", "--list", "weekly", "--clear")
    assert "Note:" not in shown(project)
    missing = project.cli("digest", "drop", "b99999", "--list", "weekly", expect=1)
    assert "no briefing 'b99999'" in missing.output
    assert "digest show" in missing.output


def test_a_list_that_requires_approval_waits_and_a_change_asks_again(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    project = smtp_project
    data = project.config()
    data["lists"][0]["require_approval"] = True
    project.write_config(data)
    project.cli("fetch")
    project.cli("subscribers", "add", "editor@example.com", "--list", "weekly")
    assert "Approval: waiting." in shown(project)
    waiting = project.cli("send", "--list", "weekly", "--yes", expect=1)
    assert "the next digest of weekly waits for approval" in waiting.output
    assert "newsletter digest approve --list weekly" in waiting.output
    assert smtp_server.received == []
    project.cli("digest", "approve", "--list", "weekly")
    assert "Approval: approved" in shown(project)
    story = short_id_of(
        shown(project), "Keyfold patches flaw that could expose shared vault entries"
    )
    project.cli("digest", "drop", story, "--list", "weekly")  # a change after approval
    assert "Approval: changed since approval" in shown(project)
    changed = project.cli("send", "--list", "weekly", "--yes", expect=1)
    assert "changed since it was approved" in changed.output
    assert smtp_server.received == []
    project.cli("digest", "approve", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    assert len(smtp_server.received) == 1
    assert "Keyfold" not in parts(sent(smtp_server))[1]


def test_counts_in_the_subject_contents_and_sections_are_the_stories_in_the_mail(
    project: Project,
) -> None:
    project.update("digest", max_per_theme=1, max_briefings=4)
    project.cli("fetch")
    project.cli("subscribers", "add", "editor@example.com", "--list", "weekly")
    plan = shown(project)
    project.cli("send", "--list", "weekly", "--yes")
    (message,) = project.outbox()
    html, text = parts(message)
    in_mail = len(re.findall(r"<h3[ >]", html))
    assert in_mail == 4
    assert f"{in_mail} stories in the e-mail" in plan
    assert str(message["Subject"]).endswith(f"and {in_mail - 1} more")
    contents = re.search(r"In this issue: (.+?)\n\n", text, re.S)
    assert contents
    counted = sum(int(n) for n in re.findall(r"\((\d+)\)", contents.group(1)))
    assert counted + 1 == in_mail  # the top story and each theme's stories
    for section in re.findall(r"== ([A-Z &]+) ==\n(.*?)(?=\n== |\n-- )", text, re.S):
        name, body = section
        if name not in ("MORE ON THE WEB",) and not name.startswith("TOP STORY"):
            assert "https://" in body, f"{name} is an empty section"
    assert "== MORE ON THE WEB ==" in text
    assert '<h2 id="more-on-the-web">More on the web</h2>' in html
    assert "more on the web" in contents.group(1)


def test_the_attribution_is_the_publications_own_words(project: Project) -> None:
    data = project.config()
    del data["publication"]["attribution"]
    del data["publication"]["attribution_link"]
    project.write_config(data)
    project.cli("fetch")
    project.cli("preview", "--list", "weekly", "--out", "p")
    text = (project.folder / "p" / "digest.txt").read_text()
    assert "From reporting by TechWire Daily" in text
    assert "Read the original:" in text
    assert "Source assisted" not in text  # SignalDesk's words stay in its own config
    project.update("publication", attribution="Reported first by {source}.")
    project.cli("preview", "--list", "weekly", "--out", "p")
    html = (project.folder / "p" / "digest.html").read_text()
    assert re.search(r"Reported first by <a [^>]+>TechWire Daily</a>\.", html)


def test_send_with_yes_and_nobody_subscribed_says_so_and_exits_zero(project: Project) -> None:
    project.cli("fetch")
    without = project.cli("send", "--list", "weekly").output
    with_yes = project.cli("send", "--list", "weekly", "--yes").output
    assert without == with_yes
    assert "No active subscribers on weekly, so no digest was built" in with_yes


def test_a_feed_of_old_items_says_why_nothing_is_new_and_which_setting_decides(
    project: Project,
) -> None:
    feed = project.folder / "samples" / "briefings.xml"
    text = feed.read_text()
    old = "<pubDate>Mon, 06 Mar 2017 09:00:00 GMT</pubDate>"
    feed.write_text(re.sub(r"<item>", "<item>" + old, text))
    project.cli("fetch")
    for command in (
        ("preview", "--list", "weekly", "--out", "p"),
        ("digest", "show", "--list", "weekly"),
    ):
        output = project.cli(*command).output
        assert "no new briefings in the window" in output
        assert "15 briefing(s) are older than 7 days" in output
        assert "[digest] window_days = 7 in config.toml decides" in output


def test_the_desk_says_what_a_drop_pin_or_note_really_changes(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "add", "editor@example.com", "--list", "weekly")
    show = shown(project)
    keyfold = short_id_of(show, "Keyfold patches flaw that could expose shared vault entries")
    lead = short_id_of(
        show, "Nordvale Bank restricts outside AI coding assistants for its engineers"
    )
    project.cli("digest", "drop", keyfold.upper(), "--list", "weekly")  # B12 is b12
    refused = project.cli("digest", "pin", keyfold, "--list", "weekly", expect=1)
    assert "is dropped from weekly's digests" in refused.output
    assert f"digest drop {keyfold} --list weekly --undo" in refused.output
    project.cli("digest", "pin", lead, "--list", "weekly")
    assert "pinned" in shown(project)
    assert "had no pin" not in project.cli("digest", "pin", "--clear", "--list", "weekly").output
    assert "pinned" not in shown(project)
    empty = project.folder / "empty.md"
    empty.write_text("  \n", encoding="utf-8")
    blank = project.cli("digest", "note", "--list", "weekly", "--file", str(empty), expect=1)
    assert "is empty: nothing was changed" in blank.output
    assert "--clear" in blank.output
    project.cli("send", "--list", "weekly", "--yes")
    gone = project.cli("digest", "drop", lead, "--list", "weekly").output
    assert re.search(r"went out in digest \d+ of weekly: nothing to change", gone)
    back = project.cli("digest", "drop", keyfold, "--list", "weekly", "--undo").output
    assert "no digest to come will" in back  # older than the next digest's window
