"""Which commands verify a change to a repository, and why: what the repository itself shows it
uses (its configuration, dependencies and test files), never a guess it does not support.

Each detected command carries its reason, shown on the project (API, CLI, page), so a wrong
guess is visible and the user knows what to override.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

Read = Callable[[str], str | None]

# How many test files are read to see what they import: enough to be sure, cheap on a big
# repository (each is one `git show`).
MAX_TEST_FILES_READ = 60
SKIPPED_DIRS = {"node_modules", "site-packages", ".venv", "venv", ".tox", "vendor", "third_party"}

_IMPORTS_PYTEST = re.compile(r"^\s*(import pytest\b|from pytest\b|from _pytest\b)", re.M)
_IMPORTS_UNITTEST = re.compile(r"^\s*(import unittest\b|from unittest\b)", re.M)
# A dependency written as a string ("pytest>=8", 'pytest') in pyproject.toml, setup.py, Pipfile.
_QUOTED_PYTEST = re.compile(r"""["']pytest\b(?![-_.\w])|["']pytest\s*[<>=!~\[;]""")
# A requirement line: "pytest", "pytest==8.0", "pytest>=7 ; python_version...".
_REQUIREMENT_PYTEST = re.compile(r"^\s*pytest\s*([<>=!~\[;#]|$)", re.M)
# Pipfile: pytest = "*"
_PIPFILE_PYTEST = re.compile(r"^\s*pytest\s*=", re.M)


@dataclass(frozen=True)
class Detected:
    command: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"command": self.command, "reason": self.reason}


def detect_verify(files: list[str], read: Read) -> list[Detected]:
    """The commands that verify a change, tests first, then the linters the repo configures."""
    present = set(files)
    names = {PurePosixPath(f).name for f in files}
    found: list[Detected] = []
    python = _python_tests(files, present, read)
    if python is not None:
        found.append(python)
    pyproject = read("pyproject.toml") if "pyproject.toml" in present else None
    if "package.json" in present:
        package = read("package.json") or "{}"
        try:
            scripts = json.loads(package).get("scripts", {})
        except (ValueError, AttributeError):
            scripts = {}
        if not isinstance(scripts, dict):
            scripts = {}
        test = scripts.get("test", "")
        if isinstance(test, str) and test and "no test specified" not in test:
            found.append(Detected("npm test", f"package.json has a test script ({test!r})"))
        if "lint" in scripts:
            found.append(Detected("npm run lint", "package.json has a lint script"))
    if "Cargo.toml" in present:
        found.append(Detected("cargo test", "Cargo.toml: a Rust crate"))
    if "go.mod" in present:
        found.append(Detected("go test ./...", "go.mod: a Go module"))
    if not found and "Makefile" in names:
        makefile = read("Makefile") or ""
        if any(line.startswith("test:") for line in makefile.splitlines()):
            found.append(Detected("make test", "the Makefile has a test target"))
    if pyproject and "[tool.ruff" in pyproject:
        found.append(Detected("ruff check .", "pyproject.toml configures ruff ([tool.ruff])"))
    return found


def _python_tests(files: list[str], present: set[str], read: Read) -> Detected | None:
    tests = sorted(
        (f for f in files if _is_python_test(f)),
        key=lambda f: (f.count("/"), f),  # the project's own tests before deeply nested ones
    )
    pytest_why = _pytest_configured(files, present, read)
    unittest_files: list[str] = []
    plain_files: list[str] = []
    if not pytest_why:
        for path in tests[:MAX_TEST_FILES_READ]:
            text = read(path) or ""
            if _IMPORTS_PYTEST.search(text):
                pytest_why.append(f"{path} imports pytest")
                break
            if _IMPORTS_UNITTEST.search(text):
                unittest_files.append(path)
            elif re.search(r"^def test", text, re.M):
                plain_files.append(path)
    if pytest_why:
        return Detected("python3 -m pytest -q", "pytest: " + "; ".join(pytest_why))
    if plain_files:
        # Bare test functions run only under pytest, whether or not it is declared.
        return Detected(
            "python3 -m pytest -q",
            f"test functions outside any unittest class ({_some(plain_files)}) need pytest; "
            "it is not declared as a dependency, so setup may have to install it",
        )
    if unittest_files:
        return Detected(
            _unittest_command(unittest_files, present),
            f"the tests use unittest ({_some(unittest_files)}) and nothing in the repository "
            "uses pytest (no pytest dependency, configuration, conftest.py or import)",
        )
    return None


def _pytest_configured(files: list[str], present: set[str], read: Read) -> list[str]:
    """Why the repository uses pytest, from its configuration and dependencies."""
    why: list[str] = []
    if "pytest.ini" in present:
        why.append("pytest.ini")
    pyproject = read("pyproject.toml") if "pyproject.toml" in present else None
    if pyproject is not None:
        if "[tool.pytest" in pyproject:
            why.append("pyproject.toml has [tool.pytest.ini_options]")
        if _QUOTED_PYTEST.search(pyproject):
            why.append("pyproject.toml lists pytest as a dependency")
    for name, marker in (("setup.cfg", "[tool:pytest]"), ("tox.ini", "[pytest]")):
        text = read(name) if name in present else None
        if text is None:
            continue
        if marker in text:
            why.append(f"{name} has {marker}")
        elif _REQUIREMENT_PYTEST.search(text):
            why.append(f"{name} lists pytest")
    for name in ("setup.py", "Pipfile"):
        text = read(name) if name in present else None
        if text and (_QUOTED_PYTEST.search(text) or _PIPFILE_PYTEST.search(text)):
            why.append(f"{name} lists pytest")
    for path in files:
        pure = PurePosixPath(path)
        in_requirements = pure.name.startswith("requirements") or (
            len(pure.parts) > 1 and pure.parts[-2] == "requirements"
        )
        if in_requirements and pure.suffix in (".txt", ".in") and path.count("/") <= 2:
            text = read(path)
            if text and _REQUIREMENT_PYTEST.search(text):
                why.append(f"{path} lists pytest")
    conftest = [f for f in files if PurePosixPath(f).name == "conftest.py" and not _skipped(f)]
    if conftest:
        why.append(f"{conftest[0]} (a pytest conftest)")
    return why


def _unittest_command(test_files: list[str], present: set[str]) -> str:
    """`python3 -m unittest` finds test*.py files in packages from the top; tests elsewhere
    (a tests/ directory without __init__.py, files named *_test.py) need discover's -s/-p."""
    names = [PurePosixPath(f).name for f in test_files]
    pattern = "test*.py"
    if not all(n.startswith("test") for n in names) and all(n.endswith("_test.py") for n in names):
        pattern = "*_test.py"
    dirs = {str(PurePosixPath(f).parent) for f in test_files}
    importable = all(_in_packages(d, present) for d in dirs)
    if pattern == "test*.py" and importable:
        return "python3 -m unittest"
    tops = {d.split("/")[0] for d in dirs}
    start = tops.pop() if len(tops) == 1 else "."
    command = "python3 -m unittest discover"
    if start != ".":
        command += f" -s {start}"
        if _in_packages(start, present):
            command += " -t ."
    if pattern != "test*.py":
        command += f" -p '{pattern}'"
    return command


def _in_packages(directory: str, present: set[str]) -> bool:
    """Whether every directory from the top down to ``directory`` has an __init__.py."""
    if directory in ("", "."):
        return True
    parts = PurePosixPath(directory).parts
    return all(f"{'/'.join(parts[: i + 1])}/__init__.py" in present for i in range(len(parts)))


def _is_python_test(path: str) -> bool:
    name = PurePosixPath(path).name
    return (
        path.endswith(".py")
        and (name.startswith("test_") or name.endswith("_test.py"))
        and not _skipped(path)
    )


def _skipped(path: str) -> bool:
    return any(part in SKIPPED_DIRS for part in PurePosixPath(path).parts)


def _some(paths: list[str]) -> str:
    return ", ".join(paths[:2]) + (f" and {len(paths) - 2} more" if len(paths) > 2 else "")
