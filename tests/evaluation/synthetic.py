"""A small SWE-bench-style dataset of our own: synthetic repositories, each with an issue, a
gold patch and hidden tests (a test patch the agent never sees).

``python -m tests.evaluation.synthetic DIR`` writes DIR/repos (the local mirrors),
DIR/dataset.jsonl and DIR/environments.toml; the tests call :func:`build`.

- calc: ``sub`` adds instead of subtracting; the scripted model fixes it (resolved).
- words: ``count`` counts characters, not words; the scripted model changes it wrongly
  (tests fail).
- broken: its setup command fails, as when a toolchain is missing (environment failure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PYPROJECT = '[tool.pytest.ini_options]\npythonpath = ["."]\n'


@dataclass(frozen=True)
class Spec:
    name: str
    files: dict[str, str]  # the repository at its base commit
    fix: dict[str, str]  # the gold patch's files after the fix
    hidden_tests: dict[str, str]  # the test patch's files
    problem: str
    fail_to_pass: list[str]
    pass_to_pass: list[str]


SPECS = [
    Spec(
        name="calc",
        files={
            "calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a + b\n",
            "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n"
            "    assert add(2, 3) == 5\n",
            "pyproject.toml": PYPROJECT,
        },
        fix={"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"},
        hidden_tests={
            "tests/test_sub.py": "from calc import sub\n\n\ndef test_sub():\n"
            "    assert sub(5, 3) == 2\n"
        },
        problem="sub is adding instead of subtracting\n\nsub(5, 3) returns 8; it should be 2.",
        fail_to_pass=["tests/test_sub.py::test_sub"],
        pass_to_pass=["tests/test_calc.py::test_add"],
    ),
    Spec(
        name="words",
        files={
            "words.py": "def shout(s):\n    return s.upper()\n\n\ndef count(s):\n"
            "    return len(s)\n",
            "tests/test_words.py": "from words import shout\n\n\ndef test_shout():\n"
            "    assert shout('hi') == 'HI'\n",
            "pyproject.toml": PYPROJECT,
        },
        fix={
            "words.py": "def shout(s):\n    return s.upper()\n\n\ndef count(s):\n"
            "    return len(s.split())\n"
        },
        hidden_tests={
            "tests/test_count.py": "from words import count\n\n\ndef test_count():\n"
            "    assert count('two words') == 2\n"
        },
        problem="count gives the wrong number\n\ncount should give the number of words in "
        "a sentence; count('two words') gives 9.",
        fail_to_pass=["tests/test_count.py::test_count"],
        pass_to_pass=["tests/test_words.py::test_shout"],
    ),
    Spec(
        name="broken",
        files={
            "lib.py": "def one():\n    return 2\n",
            "tests/test_lib.py": "def test_nothing():\n    pass\n",
            "pyproject.toml": PYPROJECT,
        },
        fix={"lib.py": "def one():\n    return 1\n"},
        hidden_tests={
            "tests/test_one.py": "from lib import one\n\n\ndef test_one():\n    assert one() == 1\n"
        },
        problem="one() returns 2\n\nIt should return 1.",
        fail_to_pass=["tests/test_one.py::test_one"],
        pass_to_pass=["tests/test_lib.py::test_nothing"],
    ),
]

ENVIRONMENTS = """\
[default]
verify = ["python3 -m pytest -q -p no:cacheprovider"]

[repos."acme/words"]
# One run per test, its exit code read (the other way scoring reads results).
test_command = "python3 -m pytest -q -p no:cacheprovider {test}"

[repos."acme/broken"]
# A toolchain the repository needs is missing: its environment cannot be built.
setup = ["python3 -c \\"import sys; sys.exit('rustc: command not found')\\""]
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def _write(repo: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)


def build(root: Path, names: list[str] | None = None) -> Path:
    """Build the repositories and return the dataset's path (JSONL)."""
    repos = root / "repos"
    lines = []
    for spec in SPECS:
        if names is not None and spec.name not in names:
            continue
        repo = repos / f"acme__{spec.name}"
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "config", "user.name", "Dev")
        git(repo, "config", "user.email", "dev@example.com")
        _write(repo, {**spec.files, ".gitignore": "__pycache__/\n"})
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        base = git(repo, "rev-parse", "HEAD").strip()
        # The gold patch and the hidden tests, as diffs against the base; never committed,
        # so nothing reachable in the repository holds them.
        _write(repo, {**spec.fix, **spec.hidden_tests})
        git(repo, "add", "-A")
        patch = git(repo, "diff", "--cached", "--", *spec.fix)
        test_patch = git(repo, "diff", "--cached", "--", *spec.hidden_tests)
        git(repo, "reset", "-q", "--hard", base)
        lines.append(
            {
                "instance_id": f"acme__{spec.name}-1",
                "repo": f"acme/{spec.name}",
                "base_commit": base,
                "problem_statement": spec.problem,
                "patch": patch,
                "test_patch": test_patch,
                # As SWE-bench's files keep them: JSON text.
                "FAIL_TO_PASS": json.dumps(spec.fail_to_pass),
                "PASS_TO_PASS": json.dumps(spec.pass_to_pass),
            }
        )
    dataset = root / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "environments.toml").write_text(ENVIRONMENTS)
    return dataset


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
