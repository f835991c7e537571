"""WorkspaceTools over a real git repository, with commands in a real PlainSandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from errands.agent.tools import WorkspaceTools
from errands.git import Workspace
from errands.sandbox import PlainSandbox, SandboxPolicy
from errands.settings import sandbox_env
from tests.conftest import run_git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "README.md").write_text("# demo\nneedle in the readme\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "core.py").write_text("def needle():\n    return 1\n")
    (root / "pkg" / "sub" / "deep.py").write_text("NEEDLE = 'needle'\n")
    (root / "docs" / "guide.txt").write_text("a needle in the docs\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    run_git(root, "init", "-q", "-b", "main")
    run_git(root, "config", "user.name", "Dev")
    run_git(root, "config", "user.email", "dev@example.com")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def tools(repo: Path) -> WorkspaceTools:
    return WorkspaceTools(
        repo,
        PlainSandbox(SandboxPolicy(workspace=repo, env=sandbox_env())),
        repository=Workspace(repo, "main", repo / ".git"),
        command_timeout=30,
    )


# -- list_files ---------------------------------------------------------------------------


def test_list_files_shows_tracked_and_untracked_but_not_ignored(
    tools: WorkspaceTools, repo: Path
) -> None:
    (repo / "new.py").write_text("x = 1\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.py").write_text("")
    (repo / "debug.log").write_text("noise")

    listed = tools.list_files().splitlines()

    assert "README.md" in listed
    assert "pkg/sub/deep.py" in listed
    assert "new.py" in listed
    assert "build/out.py" not in listed
    assert "debug.log" not in listed


def test_list_files_filters_by_directory(tools: WorkspaceTools) -> None:
    assert tools.list_files("pkg").splitlines() == [
        "pkg/__init__.py",
        "pkg/core.py",
        "pkg/sub/deep.py",
    ]


def test_list_files_of_an_empty_directory_says_so(tools: WorkspaceTools, repo: Path) -> None:
    (repo / "empty").mkdir()
    assert tools.list_files("empty").startswith("No files under")


# -- read_file ----------------------------------------------------------------------------


def test_read_file_numbers_every_line(tools: WorkspaceTools) -> None:
    text = tools.read_file("pkg/core.py")
    assert text.splitlines() == ["     1\tdef needle():", "     2\t    return 1"]


def test_read_file_range_shows_only_those_lines_and_says_which(
    tools: WorkspaceTools, repo: Path
) -> None:
    (repo / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 21)))

    text = tools.read_file("long.txt", start_line=5, end_line=7)

    body, note = text.rsplit("\n", 1)
    assert body.splitlines() == ["     5\tline 5", "     6\tline 6", "     7\tline 7"]
    assert note == "[lines 5-7 of 20]"


def test_read_file_past_the_end_says_how_long_the_file_is(tools: WorkspaceTools) -> None:
    assert tools.read_file("pkg/core.py", start_line=50) == "pkg/core.py has only 2 lines."


def test_read_file_refuses_to_show_a_binary_file(tools: WorkspaceTools, repo: Path) -> None:
    (repo / "image.bin").write_bytes(b"\x89PNG\x00\x01\x02" * 10)
    text = tools.read_file("image.bin")
    assert "binary file (70 bytes)" in text
    assert "PNG" not in text


def test_read_file_decodes_non_utf8_with_replacement(tools: WorkspaceTools, repo: Path) -> None:
    (repo / "latin1.txt").write_bytes(b"caf\xe9\n")
    assert tools.read_file("latin1.txt") == "     1\tcaf\ufffd"


def test_read_missing_file_is_an_error_result(tools: WorkspaceTools) -> None:
    text = tools.read_file("nope.py")
    assert text.startswith("Error: ")
    assert "nope.py" in text


# -- grep ---------------------------------------------------------------------------------


def test_grep_prints_path_line_and_text(tools: WorkspaceTools) -> None:
    assert tools.grep("def needle").splitlines() == ["pkg/core.py:1:def needle():"]


def test_grep_glob_matches_files_at_any_depth(tools: WorkspaceTools, repo: Path) -> None:
    (repo / "top.py").write_text("needle = 2\n")  # untracked, at the root

    paths = {line.split(":", 1)[0] for line in tools.grep("needle", glob="*.py").splitlines()}

    assert paths == {"top.py", "pkg/core.py", "pkg/sub/deep.py"}


def test_grep_glob_within_a_directory(tools: WorkspaceTools) -> None:
    paths = {line.split(":", 1)[0] for line in tools.grep("needle", "pkg/sub", "*.py").splitlines()}
    assert paths == {"pkg/sub/deep.py"}


def test_grep_without_matches_says_so(tools: WorkspaceTools) -> None:
    assert tools.grep("no such text anywhere") == "No matches."


def test_grep_with_a_bad_pattern_is_an_error_result(tools: WorkspaceTools) -> None:
    assert tools.grep("(unclosed").startswith("Error: ")


# -- write_file / edit_file ----------------------------------------------------------------


def test_write_file_creates_parent_directories(tools: WorkspaceTools, repo: Path) -> None:
    result = tools.write_file("new/dir/mod.py", "a = 1\nb = 2\n")
    assert result == "Wrote new/dir/mod.py (2 lines)."
    assert (repo / "new" / "dir" / "mod.py").read_text() == "a = 1\nb = 2\n"


def test_edit_file_replaces_the_single_exact_occurrence(tools: WorkspaceTools, repo: Path) -> None:
    assert tools.edit_file("pkg/core.py", "return 1", "return 42") == "Edited pkg/core.py."
    assert (repo / "pkg" / "core.py").read_text() == "def needle():\n    return 42\n"


def test_edit_file_with_absent_text_is_a_clear_error(tools: WorkspaceTools, repo: Path) -> None:
    before = (repo / "pkg" / "core.py").read_text()
    result = tools.edit_file("pkg/core.py", "return 2", "return 3")
    assert result.startswith("Error: ")
    assert "not found" in result
    assert (repo / "pkg" / "core.py").read_text() == before


def test_edit_file_with_ambiguous_text_names_the_count(tools: WorkspaceTools, repo: Path) -> None:
    (repo / "twice.py").write_text("x = 1\nx = 1\n")
    result = tools.edit_file("twice.py", "x = 1", "x = 2")
    assert result.startswith("Error: ")
    assert "2 times" in result
    assert (repo / "twice.py").read_text() == "x = 1\nx = 1\n"


def test_edit_missing_file_is_an_error_result(tools: WorkspaceTools, repo: Path) -> None:
    result = tools.edit_file("ghost.py", "a", "b")
    assert result.startswith("Error: ")
    assert "ghost.py" in result
    assert not (repo / "ghost.py").exists()


# -- confinement ---------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    return secret


@pytest.mark.parametrize("path", ["../secret.txt", "pkg/../../secret.txt"])
def test_relative_escape_is_refused_for_read_and_write(
    tools: WorkspaceTools, outside: Path, path: str
) -> None:
    read = tools.read_file(path)
    write = tools.write_file(path, "overwritten")
    assert read.startswith("Error: ")
    assert "outside the workspace" in read
    assert "TOP SECRET" not in read
    assert "outside the workspace" in write
    assert outside.read_text() == "TOP SECRET\n"


def test_absolute_path_is_refused(tools: WorkspaceTools) -> None:
    read = tools.read_file("/etc/passwd")
    assert read.startswith("Error: ")
    assert "outside the workspace" in read
    assert "root:" not in read
    assert "outside the workspace" in tools.write_file("/etc/passwd", "x")


def test_absolute_path_to_outside_file_is_not_written(tools: WorkspaceTools, outside: Path) -> None:
    assert "outside the workspace" in tools.write_file(str(outside), "overwritten")
    assert "outside the workspace" in tools.edit_file(str(outside), "TOP", "BOTTOM")
    assert outside.read_text() == "TOP SECRET\n"


def test_symlink_pointing_outside_is_refused_for_read_write_and_edit(
    tools: WorkspaceTools, repo: Path, outside: Path
) -> None:
    (repo / "link.txt").symlink_to(outside)
    (repo / "linkdir").symlink_to(outside.parent)

    for result in (
        tools.read_file("link.txt"),
        tools.write_file("link.txt", "overwritten"),
        tools.edit_file("link.txt", "TOP", "BOTTOM"),
        tools.write_file("linkdir/planted.txt", "x"),
        tools.list_files("linkdir"),
        tools.grep("SECRET", "linkdir"),
    ):
        assert result.startswith("Error: ")
        assert "outside the workspace" in result
    assert outside.read_text() == "TOP SECRET\n"
    assert not (outside.parent / "planted.txt").exists()


def test_writing_into_dot_git_is_refused(tools: WorkspaceTools, repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    for result in (
        tools.write_file(".git/hooks/pre-commit", "#!/bin/sh\nrm -rf /\n"),
        tools.write_file("pkg/../.git/config", "[core]\n"),
        tools.edit_file(".git/HEAD", "main", "evil"),
    ):
        assert result.startswith("Error: ")
        assert ".git" in result
    assert not hook.exists()
    assert "main" in (repo / ".git" / "HEAD").read_text()


def test_empty_path_is_refused(tools: WorkspaceTools) -> None:
    assert tools.read_file("").startswith("Error: ")


# -- run_command ---------------------------------------------------------------------------


def test_run_command_reports_exit_code_and_output(tools: WorkspaceTools) -> None:
    result = tools.run_command("ls pkg; echo to-stderr >&2; exit 3")
    header, _, output = result.partition("\n")
    assert header.startswith("[exit code 3 in ")
    assert "core.py" in output
    assert "to-stderr" in output


def test_run_command_runs_in_the_workspace_root(tools: WorkspaceTools, repo: Path) -> None:
    assert tools.run_command("pwd").splitlines()[1] == str(repo.resolve())


def test_run_command_timeout_is_capped_by_the_project_limit(repo: Path) -> None:
    tools = WorkspaceTools(
        repo,
        PlainSandbox(SandboxPolicy(workspace=repo, env=sandbox_env())),
        repository=Workspace(repo, "main", repo / ".git"),
        command_timeout=0.3,
    )
    result = tools.run_command("sleep 30", timeout_seconds=1000)
    assert result.startswith("[timed out")


def test_no_git_directory_can_be_written_anywhere(tools: WorkspaceTools, repo: Path) -> None:
    """A .git below the root makes a nested repository, whose config host-side git would
    read; writing one is refused like the root's own."""
    results = [
        tools.write_file("vendor/lib/.git/config", "[core]\n\tfsmonitor = /tmp/x\n"),
        tools.write_file("vendor/.git", "gitdir: /tmp/elsewhere\n"),
        tools.write_file("pkg/.GIT/HEAD", "ref: refs/heads/main\n"),
    ]

    for result in results:
        assert result.startswith("Error:"), result
        assert "nested repositories are not allowed" in result
    assert not (repo / "vendor").exists()


def test_run_command_tells_the_agent_its_nested_repositories_are_refused(
    tools: WorkspaceTools,
) -> None:
    made = tools.run_command("git init -q vendor/lib && echo made")
    removed = tools.run_command("rm -rf vendor && echo removed")

    assert made.startswith("Error: this command left nested git repositories")
    assert "vendor/lib" in made and "made" in made  # the command's own output too
    assert removed.startswith("[exit code 0")


def test_a_tool_that_may_have_changed_the_tree_marks_it_touched(
    tools: WorkspaceTools, repo: Path
) -> None:
    """A research job's tree is parked without a scrub only while ``touched`` is false: every
    tool that can change a file or run a command sets it, even when it then fails."""
    tools.list_files()
    tools.read_file("README.md")
    tools.grep("needle")
    assert tools.touched is False
    assert tools.write_file(".git/hooks/post-checkout", "#!/bin/sh\n").startswith("Error")
    assert tools.touched is True
    for act in (
        lambda t: t.write_file("new.py", "x = 1\n"),
        lambda t: t.edit_file("README.md", "needle", "pin"),
        lambda t: t.run_command("true"),
    ):
        fresh = WorkspaceTools(repo, tools.sandbox, repository=tools.repository, command_timeout=30)
        act(fresh)
        assert fresh.touched is True
