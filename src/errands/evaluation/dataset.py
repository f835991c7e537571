"""SWE-bench-style instances from a local file (JSONL, or Parquet when pyarrow is installed),
and the environment each repository needs (setup commands, how to run its tests).

An instance is a repository at a base commit, an issue (``problem_statement``), the gold
``patch`` (only its file names are used: localization) and the hidden ``test_patch`` whose
``FAIL_TO_PASS`` tests must flip to passing while the ``PASS_TO_PASS`` ones keep passing.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errands.errors import InvalidInput

REQUIRED = ("repo", "base_commit", "problem_statement", "patch", "test_patch")
TEST_LISTS = ("FAIL_TO_PASS", "PASS_TO_PASS")
# pytest prints one line per test with -rA ("PASSED tests/x.py::test_y"), which scoring reads.
DEFAULT_TEST_COMMAND = "python3 -m pytest -rA -p no:cacheprovider {tests}"
_SHA = re.compile(r"[0-9a-f]{7,64}")
_GOLD_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Environment:
    """How to build and test one repository: the Errands project's setup and verify commands,
    and the command that runs named tests (``{tests}``: all at once, pytest's ``-rA`` lines
    read; ``{test}``: once per test, its exit code read)."""

    setup: tuple[str, ...] = ()
    network: bool = False
    verify: tuple[str, ...] | None = None  # None: what Errands detects in the repository
    test_command: str = DEFAULT_TEST_COMMAND

    def merged(self, overrides: Mapping[str, Any], where: str) -> Environment:
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("setup", "verify"):
                values[key] = tuple(_strings(value, f"{where}: {key}"))
            elif key == "network":
                if not isinstance(value, bool):
                    raise InvalidInput(f"{where}: network must be true or false.")
                values[key] = value
            elif key == "test_command":
                if not isinstance(value, str) or not ("{tests}" in value or "{test}" in value):
                    raise InvalidInput(
                        f"{where}: test_command must be a string naming {{tests}} or {{test}}."
                    )
                values[key] = value
            else:
                raise InvalidInput(
                    f"{where}: unknown key {key!r} (setup, network, verify, test_command)."
                )
        return Environment(**{**self.__dict__, **values})


@dataclass(frozen=True)
class Instance:
    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    patch: str
    test_patch: str
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    environment: Environment = field(default_factory=Environment)

    @property
    def gold_files(self) -> list[str]:
        """Files the gold patch changes (where the fix belongs)."""
        return sorted({m.group(2) for m in _GOLD_FILE.finditer(self.patch)})


# Per-instance environment columns (SWE-bench has none of these; a dataset may add them).
ENV_COLUMNS = {
    "setup_commands": "setup",
    "setup_network": "network",
    "verify_commands": "verify",
    "test_command": "test_command",
}


def load_environments(path: Path | None) -> dict[str, Environment]:
    """The side file: ``[repos."owner/name"]`` tables of TOML (or the same as JSON)."""
    if path is None:
        return {}
    text = _read(path)
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(
            f"{path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from exc
    repos = data.get("repos", {})
    if not isinstance(repos, dict):
        raise InvalidInput(f"{path}: 'repos' must be a table of repositories.")
    default = Environment()
    if isinstance(data.get("default"), dict):
        default = default.merged(data["default"], f"{path} [default]")
    found = {"*": default}
    for repo, spec in repos.items():
        if not isinstance(spec, dict):
            raise InvalidInput(f"{path}: repos.{repo} must be a table.")
        found[repo] = default.merged(spec, f"{path} repos.{repo}")
    return found


def load_dataset(path: Path, environments: Mapping[str, Environment]) -> list[Instance]:
    rows = list(_rows(path))
    if not rows:
        raise InvalidInput(f"{path} holds no instances.")
    instances: list[Instance] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        instance = _instance(row, f"{path} row {number}", number, environments)
        if instance.instance_id in seen:
            raise InvalidInput(f"{path}: instance {instance.instance_id!r} appears twice.")
        seen.add(instance.instance_id)
        instances.append(instance)
    return instances


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path} line {number} is not JSON: {exc.msg}.") from exc
        if not isinstance(row, dict):
            raise InvalidInput(f"{path} line {number} is not a JSON object.")
        yield row


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InvalidInput(
            f"Reading {path.name} needs pyarrow: pip install 'errands[eval]' (or convert the "
            "dataset to JSONL)."
        ) from exc
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InvalidInput(f"{path} is not a readable Parquet file: {exc}") from exc
    yield from table.to_pylist()


def _instance(
    row: dict[str, Any], where: str, number: int, environments: Mapping[str, Environment]
) -> Instance:
    missing = [c for c in (*REQUIRED, *TEST_LISTS) if c not in row]
    if missing:
        raise InvalidInput(f"{where} lacks the column(s) {', '.join(missing)}.")
    text = {c: row[c] for c in REQUIRED}
    for column, value in text.items():
        if not isinstance(value, str):
            raise InvalidInput(f"{where}: {column} must be text.")
    if not _SHA.fullmatch(text["base_commit"]):
        raise InvalidInput(f"{where}: base_commit {text['base_commit']!r} is not a commit id.")
    if not text["problem_statement"].strip():
        raise InvalidInput(f"{where}: the problem statement is empty.")
    repo = text["repo"].strip()
    if not re.fullmatch(r"[\w-][\w.-]*/[\w-][\w.-]*", repo) or ".." in repo:
        raise InvalidInput(f"{where}: repo {repo!r} is not owner/name.")
    instance_id = str(row.get("instance_id") or f"{repo.replace('/', '__')}-{number}")
    # It names the instance's project and origin directory: no path separators, no "..".
    if not re.fullmatch(r"[\w@+-][\w.@+-]{0,149}", instance_id) or ".." in instance_id:
        raise InvalidInput(f"{where}: instance_id {instance_id!r} is not a plain name.")
    environment = environments.get(repo) or environments.get("*") or Environment()
    overrides = {key: row.get(column) for column, key in ENV_COLUMNS.items()}
    environment = environment.merged(
        {k: _maybe_json(v) for k, v in overrides.items()}, f"{where} (environment columns)"
    )
    return Instance(
        instance_id=instance_id,
        repo=repo,
        base_commit=text["base_commit"],
        problem_statement=text["problem_statement"],
        patch=text["patch"],
        test_patch=text["test_patch"],
        fail_to_pass=tuple(_strings(_maybe_json(row["FAIL_TO_PASS"]), f"{where}: FAIL_TO_PASS")),
        pass_to_pass=tuple(_strings(_maybe_json(row["PASS_TO_PASS"]), f"{where}: PASS_TO_PASS")),
        environment=environment,
    )


def _maybe_json(value: Any) -> Any:
    """SWE-bench's files keep lists as JSON text ("[\\"test_a\\"]")."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{where} must be a list of strings.")
    return [v for v in value if v.strip()]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path} does not exist.") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text.") from exc
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}") from exc
