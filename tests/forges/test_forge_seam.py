"""The Forge seam: the workflow reaches GitHub only through a Forge chosen per project, the
GitHub package never reaches back into the merge stage, and a new forge is one new module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import errands
import errands.forges
from errands.domain import JobKind
from errands.forges import registry
from errands.forges.github import GitHubForge
from errands.forges.local import LocalForge
from errands.settings import Settings
from errands.store import Project

SRC = Path(errands.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_workflow_never_imports_the_github_package() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(
            m for m in _imports(path) if m.startswith("errands.github")
        )
        for path in (SRC / "workflow").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_github_package_never_imports_the_merge_stage() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(
            m for m in _imports(path) if m.startswith(("errands.workflow.merge", "errands.forges"))
        )
        for path in (SRC / "github").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_forge_is_chosen_per_project(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, github_token="t")
    on_github = Project(name="a", origin="https://github.com/o/a.git", github_repo="o/a")
    local = Project(name="b", origin=str(tmp_path))
    assert isinstance(registry.forge_for(settings, on_github), GitHubForge)
    assert isinstance(registry.forge_for(settings, local), LocalForge)
    assert registry.forge_for_origin(settings, "https://github.com/o/a.git").name == "github"
    assert registry.forge_for_origin(settings, "https://example.com/o/a.git").name == "local"
    # Without GitHub credentials configured no origin is GitHub's to claim.
    plain = Settings(home=tmp_path)
    assert registry.forge_for_origin(plain, "https://github.com/o/a.git").name == "local"
    assert JobKind.GITHUB in registry.stages(settings)


def test_a_new_forge_is_one_new_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module dropped into the package (here through an extra path entry) is found, claims
    its projects, and adds its stages, with no other file edited."""
    (tmp_path / "gitlab.py").write_text(
        "from errands.forges.local import LocalForge\n"
        "class GitLabForge(LocalForge):\n"
        "    name = 'gitlab'\n"
        "    def claims(self, project):\n"
        "        return 'gitlab' in project.origin\n"
        "    def claims_origin(self, origin):\n"
        "        return origin.startswith('https://gitlab.example/')\n"
        "def forge(settings):\n"
        "    return GitLabForge()\n"
    )
    monkeypatch.setattr(errands.forges, "__path__", [*errands.forges.__path__, str(tmp_path)])
    registry._forge_modules.cache_clear()
    try:
        settings = Settings(home=tmp_path)
        project = Project(name="c", origin="https://gitlab.example/o/c.git")
        assert registry.forge_for(settings, project).name == "gitlab"
        assert registry.forge_for_origin(settings, project.origin).name == "gitlab"
    finally:
        monkeypatch.undo()
        registry._forge_modules.cache_clear()
        sys.modules.pop("errands.forges.gitlab", None)
