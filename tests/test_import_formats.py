"""Imports of other tools' exports: Mailchimp, listmonk, Substack and Buttondown, recognised by
their header row and read with their names, statuses (whoever left there stays out here),
consent and attributes; the format named in what the import prints.

The sample files in tests/data/exports/ follow each tool's documented layout (that folder's
README.md says where each comes from); what our own layout does is in tests/test_subscribers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.app import Newsletter
from newsletter.audience.store import ListedSubscriber
from newsletter.errors import ImportFileError
from tests.conftest import Project
from tests.test_subscribers import lines_named, stored_rows, tally, write

EXPORTS = Path(__file__).parent / "data" / "exports"
MAILCHIMP = EXPORTS / "mailchimp"
SUBSCRIBED = MAILCHIMP / "subscribed_members_export_4f2a9c1e07.csv"
UNSUBSCRIBED = MAILCHIMP / "unsubscribed_members_export_4f2a9c1e07.csv"
CLEANED = MAILCHIMP / "cleaned_members_export_4f2a9c1e07.csv"
LISTMONK = EXPORTS / "listmonk-subscribers.csv"
SUBSTACK = EXPORTS / "email_list.signaldesk.csv"
BUTTONDOWN = EXPORTS / "buttondown-subscribers.csv"


def listed(app: Newsletter) -> dict[str, ListedSubscriber]:
    return {row.email: row for row in app.subscribers.listed("weekly")}


def statuses(app: Newsletter) -> dict[str, str]:
    return {email: row.status for email, row in listed(app).items()}


def test_a_mailchimp_export_reads_names_consent_tags_and_its_three_files(
    newsletter: Newsletter,
) -> None:
    report = newsletter.subscribers.import_csv(SUBSCRIBED, "weekly")
    assert (report.format_name, report.format_detail) == ("Mailchimp", "")
    assert tally(report) == (3, 0, 0, 0, 0, 0)
    rows = listed(newsletter)
    assert {email: row.name for email, row in rows.items()} == {
        "ada@example.com": "Ada Lovelace",  # First Name and Last Name, joined
        "grace@example.com": "Grace Hopper",
        "linus@example.com": "",
    }
    ada = rows["ada@example.com"]
    assert ada.themes == ["Security", "Energy"]  # every tag names a theme: her themes
    assert ada.attributes == {
        "company": "Analytical Engines",
        "member_rating": "4",
        "latitude": "51.5072000",
        "longitude": "-0.1276000",
        "gmtoff": "0",
        "dstoff": "1",
        "timezone": "Europe/London",
        "cc": "GB",
        "region": "ENG",
        "last_changed": "2024-06-01 10:00:00",
        "leid": "118000001",
        "euid": "a1b2c3d4e5",
    }  # the names, the opt-in and the tags are read, not kept as attributes
    # The client's network, not its address, as for a signup here.
    assert ada.consent == (
        f"{SUBSCRIBED.name}:2 (earlier: Mailchimp export: opted in 2024-03-14 09:12:31 from "
        "203.0.113.0/24, confirmed 2024-03-14 09:14:02 from 203.0.113.0/24)"
    )
    grace = rows["grace@example.com"]
    assert grace.themes is None  # "vip" is no theme: her tags stay an attribute, and she
    assert grace.attributes["tags"] == "vip, Security"  # gets every theme
    assert grace.attributes["notes"] == "met at the conference"
    assert rows["linus@example.com"].consent.endswith(
        "(earlier: Mailchimp export: confirmed 2024-05-20 08:00:00)"
    )

    left = newsletter.subscribers.import_csv(UNSUBSCRIBED, "weekly")
    assert (left.format_name, left.format_detail) == ("Mailchimp", "unsubscribed members")
    bounced = newsletter.subscribers.import_csv(CLEANED, "weekly")
    assert bounced.format_detail == "cleaned members: bounced here"
    assert (left.suppressed, bounced.suppressed, left.added + bounced.added) == (1, 1, 0)
    assert statuses(newsletter) == {
        "ada@example.com": "active",
        "grace@example.com": "active",
        "linus@example.com": "active",
        "alan@example.com": "unsubscribed",
        "edsger@example.com": "bounced",
    }
    assert listed(newsletter)["alan@example.com"].attributes["unsub_reason"] == (
        "I no longer want to receive these emails"
    )
    newsletter.feeds.fetch()
    assert newsletter.sending.send("weekly").summary.sent == 3  # who left is not mailed


def test_a_mailchimp_file_of_only_email_addresses_imports(project: Project) -> None:
    path = write(project, "members.csv", "Email Address\nada@example.com\nbob@example.com\n")
    output = project.cli("subscribers", "import", str(path), "--list", "weekly").output
    assert f"Read as a Mailchimp export: {path}: 2 added, 0 already subscribed" in output


def test_a_listmonk_export_parses_its_json_attributes_and_keeps_the_blocklist_out(
    newsletter: Newsletter,
) -> None:
    report = newsletter.subscribers.import_csv(LISTMONK, "weekly")
    assert report.format_name == "listmonk"
    assert (report.added, report.suppressed) == (2, 2)
    rows = listed(newsletter)
    ada = rows["ada@example.com"]
    assert ada.name == "Ada Lovelace"
    assert ada.attributes == {
        "city": "London",
        "plan": "pro",
        "projects": "3",
        "beta": "true",
        "address": '{"street":"12 St James\'s Square","zip":"SW1Y"}',  # nested: compact JSON
        "languages": '["en","fr"]',
        "uuid": "8e1a0c52-3b4f-4c1e-9a7d-1f2e3d4c5b6a",
        "updated_at": "2024-06-01 08:00:00.654321 +0000 UTC",
    }  # "fax": null is no attribute
    assert ada.consent.endswith(
        "(earlier: listmonk export: subscriber since 2024-01-05 10:11:12.123456 +0000 UTC)"
    )
    assert "attributes" not in rows["grace@example.com"].attributes  # {}: none
    assert statuses(newsletter) == {
        "ada@example.com": "active",
        "grace@example.com": "active",
        "alan@example.com": "unsubscribed",  # blocklisted
        "edsger@example.com": "unsubscribed",  # disabled: no campaigns there
    }


def test_a_bad_json_cell_or_status_names_its_line(newsletter: Newsletter, project: Project) -> None:
    path = write(
        project,
        "listmonk.csv",
        "uuid,email,name,attributes,status\n"
        'u1,ada@example.com,Ada,"{""city"": ""London""}",enabled\n'
        'u2,bob@example.com,Bob,"{""city"": ""Paris""",enabled\n'
        'u3,cy@example.com,Cy,"[1, 2]",enabled\n'
        f"u4,di@example.com,Di,{'[' * 100_000},enabled\n"
        "u5,eve@example.com,Eve,{},vip\n"
        f'u6,fay@example.com,Fay,"{{""n"": {"9" * 5000}}}",enabled\n',
    )
    with pytest.raises(ImportFileError) as refused:
        newsletter.subscribers.import_csv(path, "weekly")
    problems = refused.value.message.splitlines()
    assert lines_named(path, problems) == [3, 4, 5, 6, 7]
    assert problems[0].startswith(f"{path}:3: the attributes cell is not a JSON object: ")
    assert (
        problems[1]
        == f"{path}:4: the attributes cell is not a JSON object: a JSON list, not an object"
    )
    assert problems[3] == (f"{path}:6: status 'vip' is not one of enabled, disabled, blocklisted")
    assert problems[2].endswith("nested too deeply")  # a list 100,000 deep
    assert problems[4].endswith("a number too long to read")
    assert refused.value.hint.startswith("5 bad row(s), nothing imported (read as a listmonk")
    assert stored_rows(newsletter) == (0, 0)
    output = project.cli(
        "subscribers", "import", str(path), "--list", "weekly", "--skip-invalid"
    ).output
    assert f"skipped {path}:3: the attributes cell is not a JSON object" in output
    assert f"Read as a listmonk export: {path}: 1 added" in output


def test_a_substack_export_keeps_out_whoever_turned_email_off(newsletter: Newsletter) -> None:
    report = newsletter.subscribers.import_csv(SUBSTACK, "weekly")
    assert report.format_name == "Substack"
    assert (report.added, report.suppressed) == (2, 1)
    rows = listed(newsletter)
    assert statuses(newsletter) == {
        "ada@example.com": "active",
        "grace@example.com": "active",
        "alan@example.com": "unsubscribed",  # email_disabled
    }
    assert rows["ada@example.com"].name == ""  # Substack exports no names
    assert rows["ada@example.com"].attributes == {
        "active_subscription": "true",
        "expiry": "2025-03-14T09:12:31.000Z",
        "plan": "yearly",
        "first_payment_at": "2024-03-14T09:12:31.000Z",
    }
    assert rows["grace@example.com"].consent.endswith(
        "(earlier: Substack export: subscribed 2024-04-02T17:40:00.000Z)"
    )


def test_a_buttondown_export_maps_its_subscriber_types(newsletter: Newsletter) -> None:
    report = newsletter.subscribers.import_csv(BUTTONDOWN, "weekly")
    assert report.format_name == "Buttondown"
    assert (report.added, report.suppressed) == (3, 2)
    assert statuses(newsletter) == {
        "ada@example.com": "active",  # regular
        "grace@example.com": "active",  # premium
        "linus@example.com": "pending",  # unactivated: never confirmed there
        "alan@example.com": "unsubscribed",
        "edsger@example.com": "bounced",  # undeliverable
    }
    rows = listed(newsletter)
    ada = rows["ada@example.com"]
    assert ada.themes == ["Security", "Energy"]
    assert ada.attributes == {
        "company": "Analytical Engines",  # from the metadata object
        "seats": "4",
        "referrer_url": "https://example.org/signup",
        "secondary_id": "1",
    }
    assert rows["grace@example.com"].attributes == {
        "notes": "met at the conference",
        "tags": "vip",
        "secondary_id": "2",
    }


def test_buttondowns_renamed_columns_and_metadata_that_is_not_json(
    newsletter: Newsletter, project: Project
) -> None:
    path = write(
        project,
        "buttondown.csv",
        "email_address,type,metadata,creation_date\n"
        "new@example.com,regular,{'plan': 'old'},2024-01-01\n"
        "old@example.com,removed,,2023-01-01\n",
    )
    report = newsletter.subscribers.import_csv(path, "weekly")
    assert (report.format_name, report.added, report.suppressed) == ("Buttondown", 1, 1)
    assert listed(newsletter)["new@example.com"].attributes == {"metadata": "{'plan': 'old'}"}


@pytest.mark.parametrize(
    ("header", "kept", "refused"),
    [
        # Mailchimp repeats a merge field named like its own columns: the first is kept.
        ("Email Address,UNSUB_TIME,UNSUB_REASON,UNSUB_REASON", ("unsub_reason", "b"), None),
        ("email,plan,plan,email_disabled", ("plan", "a"), None),
        ("Email Address,First Name,First Name,x", None, "first name"),  # the name: which one?
        ("email,plan,plan,x", None, "plan"),  # our own layout refuses any, as before
    ],
)
def test_a_tools_export_may_repeat_a_column_it_does_not_read(
    newsletter: Newsletter,
    project: Project,
    header: str,
    kept: tuple[str, str] | None,
    refused: str | None,
) -> None:
    path = write(project, "twice.csv", f"{header}\nada@example.com,a,b,false\n")
    if kept is not None:
        newsletter.subscribers.import_csv(path, "weekly")
        attributes = listed(newsletter)["ada@example.com"].attributes
        assert attributes[kept[0]] == kept[1]
        return
    with pytest.raises(ImportFileError) as error:
        newsletter.subscribers.import_csv(path, "weekly")
    assert str(error.value).startswith(f"{path}:1: the header row names the column {refused!r}")
    assert stored_rows(newsletter) == (0, 0)


def test_the_import_says_which_format_it_read_and_ours_goes_unsaid(project: Project) -> None:
    said = {
        path: project.cli("subscribers", "import", str(path), "--list", "weekly").output
        for path in (SUBSCRIBED, UNSUBSCRIBED, CLEANED, LISTMONK, SUBSTACK, BUTTONDOWN)
    }
    assert f"Read as a Mailchimp export: {SUBSCRIBED}: 3 added" in said[SUBSCRIBED]
    assert (
        f"Read as a Mailchimp export (unsubscribed members): {UNSUBSCRIBED}: 0 added"
        in said[UNSUBSCRIBED]
    )
    assert "Read as a Mailchimp export (cleaned members: bounced here): " in said[CLEANED]
    assert f"Read as a listmonk export: {LISTMONK}: " in said[LISTMONK]
    assert f"Read as a Substack export: {SUBSTACK}: " in said[SUBSTACK]
    assert f"Read as a Buttondown export: {BUTTONDOWN}: " in said[BUTTONDOWN]
    ours = write(project, "ours.csv", "email,name,status\nnew@example.com,New,active\n")
    output = project.cli("subscribers", "import", str(ours), "--list", "weekly").output
    assert output.startswith(f"{ours}: 1 added")
