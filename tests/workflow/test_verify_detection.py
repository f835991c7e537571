"""Verify-command detection on real small repositories, through the CLI (`project add`,
`index`, `project show`) and the project page: it picks what the repository really uses, says
why, and the command it picks runs the repository's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_git
from tests.support import running_server, settings_for

CALC = "def add(a, b):\n    return a + b\n"
UNITTEST = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n    def test_add(self):\n"
    "        self.assertEqual(add(2, 3), 5)\n\n\n"
    "if __name__ == '__main__':\n    unittest.main()\n"
)
PLAIN = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def _repo(root: Path, name: str, files: dict[str, str]) -> Path:
    repo = root / name
    for path, text in {"calc.py": CALC, **files}.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "-c", "user.name=Dev", "-c", "user.email=d@example.com", "add", "-A")
    run_git(repo, "-c", "user.name=Dev", "-c", "user.email=d@example.com", "commit", "-qm", "i")
    return repo


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERRANDS_", "OPENAI_"))}
    env["ERRANDS_HOME"] = str(home)
    return env


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "errands.cli", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _detect(home: Path, repo: Path) -> dict[str, Any]:
    _cli(home, "project", "add", str(repo), "--name", repo.name)
    _cli(home, "index", repo.name)
    project: dict[str, Any] = json.loads(_cli(home, "project", "show", repo.name, "--json"))
    return project


def _runs_the_tests(repo: Path, command: str) -> str:
    """Run the detected command in a Python that cannot import pytest: a unittest repository
    must not need it."""
    blocker = repo.parent / f"no-pytest-{repo.name}"
    blocker.mkdir(exist_ok=True)
    (blocker / "pytest.py").write_text("raise ImportError('pytest is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = command.replace("python3", sys.executable, 1)
    done = subprocess.run(
        argv,
        check=False,
        shell=True,
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    ("files", "command"),
    [
        # tests/ is not a package: plain `python3 -m unittest` would find nothing there
        ({"tests/test_calc.py": UNITTEST}, "python3 -m unittest discover -s tests"),
        (
            {"tests/__init__.py": "", "tests/test_calc.py": UNITTEST},
            "python3 -m unittest",
        ),
        ({"test_calc.py": UNITTEST}, "python3 -m unittest"),
        ({"tests/calc_test.py": UNITTEST}, "python3 -m unittest discover -s tests -p '*_test.py'"),
    ],
    ids=["tests-dir", "tests-package", "top-level", "suffix-named"],
)
def test_a_unittest_repository_is_verified_with_unittest(
    tmp_path: Path, home: Path, files: dict[str, str], command: str
) -> None:
    repo = _repo(tmp_path, "plainunit", files)
    project = _detect(home, repo)
    assert project["detected_commands"] == [command]
    assert project["effective"]["verify_commands"] == [command]
    (why,) = project["detection"]
    assert why["command"] == command
    assert (
        "use unittest" in why["reason"]
        and "nothing in the repository uses pytest" in (why["reason"])
    )
    assert "Ran 1 test" in _runs_the_tests(repo, command)

    shown = _cli(home, "project", "show", repo.name)
    assert f"{command} — because the tests use unittest" in shown


@pytest.mark.parametrize(
    ("files", "because"),
    [
        ({"tests/test_calc.py": UNITTEST, "requirements-dev.txt": "pytest>=8\n"}, "lists pytest"),
        (
            {
                "tests/test_calc.py": UNITTEST,
                "pyproject.toml": '[project]\nname = "calc"\n'
                '[project.optional-dependencies]\ntest = ["pytest>=8", "coverage"]\n',
            },
            "pyproject.toml lists pytest as a dependency",
        ),
        ({"tests/test_calc.py": UNITTEST, "tests/conftest.py": ""}, "a pytest conftest"),
        (
            {"tests/test_calc.py": UNITTEST, "tests/test_more.py": "import pytest\n" + PLAIN},
            "imports pytest",
        ),
        (
            {"tests/test_calc.py": UNITTEST, "setup.cfg": "[tool:pytest]\ntestpaths = tests\n"},
            "setup.cfg has [tool:pytest]",
        ),
        ({"tests/test_calc.py": PLAIN}, "test functions outside any unittest class"),
    ],
    ids=["requirements", "pyproject-extra", "conftest", "import", "setup-cfg", "bare-functions"],
)
def test_a_pytest_repository_is_verified_with_pytest(
    tmp_path: Path, home: Path, files: dict[str, str], because: str
) -> None:
    repo = _repo(tmp_path, "withpytest", files)
    project = _detect(home, repo)
    assert project["detected_commands"] == ["python3 -m pytest -q"]
    assert because in project["detection"][0]["reason"]


def test_the_project_page_says_why(tmp_path: Path, home: Path) -> None:
    repo = _repo(tmp_path, "pageunit", {"tests/test_calc.py": UNITTEST})
    _detect(home, repo)
    with running_server(settings_for(home, "http://127.0.0.1:9/v1")) as url:
        page = httpx.get(f"{url}/projects/pageunit", timeout=30)
    assert page.status_code == 200, page.text
    assert 'id="p-detection"' in page.text
    assert "<code>python3 -m unittest discover -s tests</code>: the tests use unittest" in (
        page.text
    )
