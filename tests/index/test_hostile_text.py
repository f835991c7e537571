"""A locate text is hostile (up to 64 KiB, from issues and API callers): what the ranker
looks up and scores of one is capped (errands.index.locate's MOST_* constants), past the caps
more of it changes nothing, and the query file still answers as the index does.

Work is asserted by count, never by time: the machines these run on are shared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from errands.index import CodeIndex
from errands.index import locate as locating
from errands.index.locate import considered, evidence
from errands.index.stored import StoredIndex
from tests.git.git_helpers import commit_files
from tests.index.conftest import git

DECOYS = 3000  # names lib/decoy.py defines, each once
SHARED = 60  # names each of the 20 shared/ files defines: every one in 20 files
DEEP = "deep/" + "/".join(f"dir{i:03d}" for i in range(260))  # 260 words naming 20 files each


def _files() -> dict[str, str | bytes | None]:
    files: dict[str, str | bytes | None] = {
        "app/target.py": "def alpha_handler(request):\n    return request\n",
        "lib/decoy.py": "".join(f"def decoy_{i:04d}():\n    pass\n\n" for i in range(DECOYS)),
    }
    for k in range(20):
        files[f"shared/m{k}.py"] = "".join(f"def common_{j}():\n    pass\n" for j in range(SHARED))
        files[f"{DEEP}/f{k}.py"] = f"VALUE_{k} = {k}\n"
    return files


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CodeIndex, StoredIndex]]:
    repo = tmp_path_factory.mktemp("hostile") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@localhost")
    index = CodeIndex.build(repo / ".git", commit_files(repo, _files(), "initial"))
    index.save_query_file(repo.parent / "index.q")
    stored = StoredIndex(repo.parent / "index.q")
    yield index, stored
    stored.close()


def _letters(i: int) -> str:
    return "".join(chr(ord("a") + i // 26**k % 26) for k in range(3))


# Fills every cap on names, words and BM25 terms with names nothing defines (and no part of
# them a part of the decoys' names, whose counts would change): what comes after is past the
# caps.
FILLER = " ".join(f"fillerQ{_letters(i)}" for i in range(locating.MOST_NAMES + 100))
ASKED = f"`alpha_handler` fails on an empty request. {FILLER}"
DECOYED = " ".join(f"decoy_{i:04d}" for i in range(DECOYS))


def test_names_past_the_caps_change_nothing(indexes: tuple[CodeIndex, StoredIndex]) -> None:
    index, stored = indexes
    assert len(ASKED + DECOYED) < 65536
    # Without the caps, 3,000 names lib/decoy.py defines would put it first.
    assert index.locate(f"`alpha_handler` fails. {DECOYED}")[0].path == "lib/decoy.py"
    answer = index.locate(ASKED)
    assert answer[0].path == "app/target.py"
    assert index.locate(f"{ASKED} {DECOYED}") == answer
    assert stored.locate(f"{ASKED} {DECOYED}") == answer


def test_what_a_long_text_has_looked_up_is_capped(indexes: tuple[CodeIndex, StoredIndex]) -> None:
    index, _stored = indexes
    many = 5000
    texts = {
        "frames": "\n".join(f'  File "pkg/mod_{i}.py", line 3, in f' for i in range(many)),
        "paths": " ".join(f"see pkg/file_{i}.py" for i in range(many)),
        "dotted": " ".join(f"pkg.mod{i}.Thing" for i in range(many)),
        "names": " ".join(f"`name_{i}` NameOf{i}" for i in range(many)),
        "words": " ".join(f"word{i}" for i in range(many)),
    }
    caps = {
        "frames": locating.MOST_FRAMES,
        "paths": locating.MOST_PATHS,
        "dotted": locating.MOST_DOTTED,
        "names": 2 * locating.MOST_NAMES,  # in code, and as many in prose
        "words": locating.MOST_WORDS,
        "terms": locating.MOST_TERMS,
    }
    for shape, text in texts.items():
        counts = considered(index, text)
        assert counts[shape] == caps[shape], (shape, counts)
        assert all(counts[k] <= cap for k, cap in caps.items()), (shape, counts)
    assert considered(index, texts["names"])["terms"] == locating.MOST_TERMS


def test_the_deepest_frames_are_kept(indexes: tuple[CodeIndex, StoredIndex]) -> None:
    index, stored = indexes
    frames = [f'  File "nowhere/x_{i}.py", line 1, in f' for i in range(locating.MOST_FRAMES)]
    target = '  File "app/target.py", line 2, in alpha_handler'
    text = "\n".join(['  File "lib/decoy.py", line 2, in decoy_0001', *frames[1:], target])
    found = evidence(index, text)
    assert "traceback_last" in found["app/target.py"].raw
    # The first frame, past the cap (it counts from the deepest), points at nothing.
    assert "traceback" not in found.get("lib/decoy.py", locating.Evidence()).raw
    assert evidence(stored, text) == found


def test_definitions_past_the_budget_keep_the_most_specific(
    indexes: tuple[CodeIndex, StoredIndex],
) -> None:
    index, stored = indexes
    shared = " ".join(f"common_{j}" for j in range(SHARED))  # 60 names in 20 files each
    text = f"{shared} alpha_handler"
    assert SHARED * 20 > locating.MOST_DEFINITIONS
    counts = considered(index, text)
    # alpha_handler (one file) first, then as many of the others as fit.
    assert counts["definitions"] == 1 + 20 * ((locating.MOST_DEFINITIONS - 1) // 20)
    assert "defines" in evidence(index, text)["app/target.py"].raw
    assert evidence(stored, text) == evidence(index, text)


def test_path_words_past_the_budget(indexes: tuple[CodeIndex, StoredIndex]) -> None:
    index, stored = indexes
    text = " ".join(f"dir{i:03d}" for i in range(260))  # each names the 20 files in DEEP
    assert locating.MOST_PATH_WORD_FILES < 260 * 20
    assert considered(index, text)["path_word_files"] == locating.MOST_PATH_WORD_FILES
    assert evidence(stored, text) == evidence(index, text)
    assert stored.locate(text) == index.locate(text)


@pytest.mark.parametrize("shape", ["frames", "paths", "dotted", "names", "mixed"])
def test_the_query_file_answers_a_hostile_text_as_the_index(
    indexes: tuple[CodeIndex, StoredIndex], shape: str
) -> None:
    index, stored = indexes
    deep = [f"{DEEP}/f{k}.py" for k in range(20)]
    items = {
        "frames": [f'File "{p}", line 1, in f' for p in deep * 10]
        + [f'File "lib/x_{i}.py", line 1, in f' for i in range(300)],
        "paths": [*deep, *(f"lib/x_{i}.py" for i in range(300))],
        "dotted": [p[:-3].replace("/", ".") + f".VALUE_{k}" for k, p in enumerate(deep)] * 20,
        "names": [f"decoy_{i:04d} common_{i % 70}" for i in range(DECOYS)],
        "mixed": [ASKED, DECOYED, *deep],
    }
    text = "\n".join(items[shape])[:65536]
    assert evidence(stored, text) == evidence(index, text)
    assert stored.locate(text, limit=20) == index.locate(text, limit=20)


def test_within_keeps_the_smallest_in_order() -> None:
    within = locating._within
    assert within([("a", 3), ("b", 1)], 4, lambda x: x[1]) == [("a", 3), ("b", 1)]
    assert within([("a", 3), ("b", 1), ("c", 2)], 4, lambda x: x[1]) == [("b", 1), ("c", 2)]
    # Ties: the earlier; and nothing past the first that does not fit.
    assert within([("a", 2), ("b", 2), ("c", 2), ("d", 9)], 5, lambda x: x[1]) == [
        ("a", 2),
        ("b", 2),
    ]
    assert within([], 0, lambda x: 0) == []


def test_a_stored_query_file_bounds_its_reads_of_a_widely_defined_name(
    indexes: tuple[CodeIndex, StoredIndex],
) -> None:
    index, stored = indexes
    tables, derived = stored.derived(), index.derived()
    for name in ("common_1", "alpha_handler", "decoy_0007", "no_such_name"):
        for most in (1, 19, 20, 25):
            assert tables.defined_in(name, most) == derived.defined_in(name, most)
    for word in ("dir007", "decoy", "shared", "no_such_word"):
        assert tables.named_by(word) == derived.named_by(word)
    assert derived.named_by("dir007") == 20
