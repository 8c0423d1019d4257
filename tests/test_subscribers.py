"""Subscriber imports: exact, atomic, and never re-subscribing someone who left."""

from __future__ import annotations

from tests.conftest import Project


def write(project: Project, name: str, text: str) -> str:
    path = project.folder / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def listed(project: Project) -> str:
    return str(
        project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly").output
    )


def test_a_bad_row_anywhere_writes_nothing(project: Project) -> None:
    path = write(
        project,
        "bad.csv",
        "email,name\nok@example.com,Ok\nnot-an-address,Bad\n"
        "fine@example.com,Fine\nalso@bad@example.com,\n",
    )
    result = project.cli("subscribers", "import", path, "--list", "weekly", expect=1)
    assert f"{path}:3: 'not-an-address' is not an address we can mail" in result.output
    assert f"{path}:5:" in result.output
    assert "nothing imported" in result.output
    project.cli("fetch")
    assert "No active subscribers" in project.cli("send", "--list", "weekly", "--dry-run").output


def test_skip_invalid_imports_the_good_rows(project: Project) -> None:
    path = write(project, "mixed.csv", "\ufeffemail;name\nok@example.com;Ok\nbroken;No\n")
    result = project.cli("subscribers", "import", path, "--list", "weekly", "--skip-invalid")
    assert "1 added" in result.output
    assert f"skipped {path}:3:" in result.output


def test_case_variants_are_one_subscriber_and_reimport_is_idempotent(project: Project) -> None:
    path = write(project, "case.csv", "email,name\nAda@Example.com,Ada\nada@EXAMPLE.COM,Ada 2\n")
    first = project.cli("subscribers", "import", path, "--list", "weekly").output
    assert "1 added" in first
    assert f"{path}:3: the address of line 2 again; not used" in first
    assert "0 skipped, 1 repeated an address." in first
    # ada@example.com in the sample list is the same person as Ada@Example.com; its row
    # there gives her another name.
    assert "5 added, 1 already subscribed (1 with a new name or attributes)" in listed(project)
    assert "0 added, 6 already subscribed, 0 suppressed" in listed(project)


def test_unknown_list_is_a_clear_error(project: Project) -> None:
    result = project.cli(
        "subscribers", "import", "subscribers/weekly.csv", "--list", "daily", expect=1
    )
    assert "no list 'daily'" in result.output
    assert "weekly" in result.output


def test_missing_email_column_names_the_file(project: Project) -> None:
    path = write(project, "nohead.csv", "ada@example.com,Ada\n")
    result = project.cli("subscribers", "import", path, "--list", "weekly", expect=1)
    assert f"{path}:1: the header row has no 'email' column" in result.output


def test_international_addresses(project: Project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(project, "idn.csv", "email,name\nuser@bücher.example,Idn\nzoë@example.com,Zoe\n")
    result = project.cli("subscribers", "import", path, "--list", "weekly", "--skip-invalid")
    assert "1 added" in result.output
    assert "non-ASCII letters before the @" in result.output
    project.cli("fetch")
    project.cli("send", "--list", "weekly", "--yes")
    delivered = project.folder / "outbox" / "new"
    (message,) = [p.read_text() for p in delivered.iterdir()]
    assert "Delivered-To: user@xn--bcher-kva.example" in message


def test_unreadable_inputs_are_one_line_errors(project: Project) -> None:
    result = project.cli("subscribers", "import", str(project.folder), "--list", "weekly", expect=1)
    assert "is a folder" in result.output
    data = project.config()
    data["database"]["url"] = "nonsense://x"
    project.write_config(data)
    result = project.cli("init", expect=1)
    assert "[database] url 'nonsense://x'" in result.output
