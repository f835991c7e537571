"""Which paths the index reads, and how it classifies them."""

from __future__ import annotations

import pytest

from errands.index.paths import MAX_DATA_BYTES, MAX_FILE_BYTES, is_test, skip_path, too_big


@pytest.mark.parametrize(
    "path",
    [
        "assets/logo.png",
        "data/scan/CT_small.dcm",
        "fixtures/report.XLSX",
        "models/weights.safetensors",
        "node_modules/left-pad/index.js",
        "static/app.min.js",
        "package-lock.json",
    ],
)
def test_binary_vendored_and_minified_files_are_never_read(path: str) -> None:
    assert skip_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "src/pkg/module.py",
        "docs/matrix.md",
        "Makefile",
        "web/app.ts",
        "data/points.csv",
        "data/nspkg.pth",  # Python's path files are text, unlike torch's .pt
    ],
)
def test_source_docs_and_text_data_are_read(path: str) -> None:
    assert not skip_path(path)


def test_size_limits_are_looser_for_source_than_for_data() -> None:
    big = MAX_DATA_BYTES + 1
    assert not too_big("src/pkg/module.py", big)
    assert too_big("data/points.csv", big)
    assert too_big("src/pkg/module.py", MAX_FILE_BYTES + 1)


def test_tests_are_told_apart_from_source() -> None:
    assert is_test("tests/test_api.py")
    assert is_test("pkg/tests/helpers.py")
    assert is_test("src/pkg/api_test.go")
    assert not is_test("src/pkg/api.py")
    assert not is_test("src/testing_utils/contest.py")
