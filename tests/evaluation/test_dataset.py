"""Datasets and environments: SWE-bench's columns from JSONL or Parquet, environments per
repository from a side file or the dataset's own columns, and bad input named clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from errands.errors import InvalidInput
from errands.evaluation.dataset import DEFAULT_TEST_COMMAND, load_dataset, load_environments

ROW: dict[str, Any] = {
    "instance_id": "acme__calc-1",
    "repo": "acme/calc",
    "base_commit": "0123456789abcdef0123456789abcdef01234567",
    "problem_statement": "sub adds\n\nIt should subtract.",
    "patch": "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-x\n+y\n"
    "diff --git a/src/b.py b/src/b.py\n",
    "test_patch": "diff --git a/tests/t.py b/tests/t.py\n",
    "FAIL_TO_PASS": '["tests/t.py::test_sub"]',
    "PASS_TO_PASS": [],
}


def write_jsonl(path: Path, *rows: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_swe_bench_rows_with_environments_from_a_side_file_and_columns(tmp_path: Path) -> None:
    side = tmp_path / "env.toml"
    side.write_text(
        '[default]\nverify = ["pytest -q"]\n'
        '[repos."acme/calc"]\nsetup = ["pip install -e ."]\nnetwork = true\n'
    )
    other = {**ROW, "instance_id": "acme__words-1", "repo": "acme/words",
             "setup_commands": '["make deps"]', "test_command": "./run {test}"}  # fmt: skip
    calc, words = load_dataset(write_jsonl(tmp_path / "d.jsonl", ROW, other),
                               load_environments(side))  # fmt: skip
    assert calc.fail_to_pass == ("tests/t.py::test_sub",) and calc.pass_to_pass == ()
    assert calc.gold_files == ["calc.py", "src/b.py"]
    assert calc.environment.setup == ("pip install -e .",) and calc.environment.network
    assert calc.environment.verify == ("pytest -q",)
    assert calc.environment.test_command == DEFAULT_TEST_COMMAND
    assert words.environment.setup == ("make deps",) and not words.environment.network
    assert words.environment.test_command == "./run {test}"


def test_parquet_reads_the_same_rows(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the eval extra) not installed")
    import pyarrow as pa

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{**ROW, "PASS_TO_PASS": "[]"}]), path)
    [instance] = load_dataset(path, {})
    assert instance.instance_id == "acme__calc-1"
    assert instance.fail_to_pass == ("tests/t.py::test_sub",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"base_commit": "main; rm -rf /"}, "is not a commit id"),
        ({"problem_statement": "  "}, "the problem statement is empty"),
        ({"FAIL_TO_PASS": [1, 2]}, "FAIL_TO_PASS must be a list of strings"),
        ({"instance_id": "../../etc"}, "is not a plain name"),
        ({"setup_commands": 3}, "setup must be a list of strings"),
        ({"test_command": "pytest"}, "must be a string naming {tests} or {test}"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_dataset(write_jsonl(tmp_path / "d.jsonl", {**ROW, **change}), {})


def test_bad_files_are_named(tmp_path: Path) -> None:
    missing = {k: v for k, v in ROW.items() if k != "test_patch"}
    with pytest.raises(InvalidInput, match="row 1 lacks the column"):
        load_dataset(write_jsonl(tmp_path / "a.jsonl", missing), {})
    (tmp_path / "b.jsonl").write_text('{"repo": 1}\nnot json\n')
    with pytest.raises(InvalidInput, match="line 2 is not JSON"):
        load_dataset(tmp_path / "b.jsonl", {})
    with pytest.raises(InvalidInput, match="appears twice"):
        load_dataset(write_jsonl(tmp_path / "c.jsonl", ROW, ROW), {})
    with pytest.raises(InvalidInput, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl", {})
    (tmp_path / "e.toml").write_text('[repos."a/b"]\nsetpu = ["x"]\n')
    with pytest.raises(InvalidInput, match="unknown key 'setpu'"):
        load_environments(tmp_path / "e.toml")
