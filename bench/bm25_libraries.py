"""Our BM25 (errands.index.bm25) next to two libraries with prebuilt wheels, on the same
documents and queries: tantivy (Rust, on disk, incremental) and bm25s (numpy/scipy, in
memory, rebuilt whole).

The documents are a repository's indexable files at one commit, each already turned into
our terms (identifiers kept whole and split: what locate's BM25 ranks on), so only the
lexical index differs: tantivy is given the terms joined by spaces with its ``whitespace``
tokenizer, bm25s the term lists. Queries are the dev set's problem statements for that
repository, turned into terms the same way. Printed per library: build CPU and wall time,
index size (as saved), median query time for the top 100, one-document update time (remove
and add again; bm25s has no update, so a rebuild), and overlap of its top 10 with ours.

The libraries are not dependencies of Errands; install them anywhere on PYTHONPATH
(``pip install --target DIR tantivy==0.27.* bm25s==0.3.16``); a missing one is skipped.

Usage::

    python bench/bm25_libraries.py [--repo OWNER/NAME] [--repos-dir /work/.mirror]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from errands.index import gitio  # noqa: E402
from errands.index.bm25 import BM25  # noqa: E402
from errands.index.lexical import term_counts, tokens  # noqa: E402
from errands.index.paths import is_binary, skip_path, too_big  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/localization-dev.jsonl")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _ours(
    docs: dict[str, Counter[str]], queries: list[dict[str, float]], tmp: Path
) -> dict[str, Any]:
    keys = list(docs)
    vocab: dict[str, int] = {}
    ptr = [0]
    terms: list[int] = []
    tfs: list[int] = []

    def build() -> BM25:
        vocab.clear()
        ptr[1:] = []
        terms.clear()
        tfs.clear()
        for key in keys:
            for term, n in docs[key].items():
                terms.append(vocab.setdefault(term, len(vocab)))
                tfs.append(n)
            ptr.append(len(terms))
        return BM25.bulk(
            keys,
            vocab,
            np.array(ptr, dtype=np.int64),
            np.array(terms, dtype=np.int32),
            np.array(tfs, dtype=np.int32),
        )

    index, wall, cpu = _timed(build)
    (tmp / "ours.pkl").write_bytes(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    times, tops = [], []
    for query in queries:
        t0 = time.perf_counter()
        top = index.top(query, 100)
        times.append(time.perf_counter() - t0)
        tops.append([k for k, _ in top[:10]])
    victim = keys[len(keys) // 2]
    t0 = time.perf_counter()
    index.remove(victim)
    index.add(victim, docs[victim])
    update = time.perf_counter() - t0
    return {
        "build": (wall, cpu), "size": _size(tmp / "ours.pkl"), "query": times,
        "update": update, "tops": tops, "how": "in place (overlay)",
    }  # fmt: skip


def _tantivy(
    docs: dict[str, Counter[str]], queries: list[dict[str, float]], tmp: Path
) -> dict[str, Any] | None:
    try:
        import tantivy  # type: ignore[import-not-found]
    except ImportError:
        return None
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("path", stored=True, tokenizer_name="raw")
    builder.add_text_field("body", stored=False, tokenizer_name="whitespace")
    schema = builder.build()
    where = tmp / "tantivy"
    where.mkdir()
    index = tantivy.Index(schema, path=str(where))
    texts = {k: " ".join(t for t, n in c.items() for _ in range(n)) for k, c in docs.items()}

    def build() -> None:
        writer = index.writer(heap_size=100_000_000, num_threads=1)
        for key, text in texts.items():
            writer.add_document(tantivy.Document(path=key, body=text))
        writer.commit()
        writer.wait_merging_threads()

    _, wall, cpu = _timed(build)
    index.reload()
    searcher = index.searcher()
    times, tops = [], []
    for query in queries:
        t0 = time.perf_counter()
        parsed = index.parse_query(" ".join(query), ["body"])
        hits = searcher.search(parsed, 100).hits
        top = [searcher.doc(addr)["path"][0] for _score, addr in hits[:10]]
        times.append(time.perf_counter() - t0)
        tops.append(top)
    victim = next(iter(list(docs)[len(docs) // 2 :]))
    t0 = time.perf_counter()
    writer = index.writer(heap_size=50_000_000, num_threads=1)
    writer.delete_documents_by_term("path", victim)
    writer.add_document(tantivy.Document(path=victim, body=texts[victim]))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    update = time.perf_counter() - t0
    return {
        "build": (wall, cpu), "size": _size(where), "query": times, "update": update,
        "tops": tops, "how": "delete + add + commit",
    }  # fmt: skip


def _bm25s(
    docs: dict[str, Counter[str]], queries: list[dict[str, float]], tmp: Path
) -> dict[str, Any] | None:
    try:
        import bm25s  # type: ignore[import-not-found]
    except ImportError:
        return None
    keys = list(docs)
    corpus = [[t for t, n in docs[k].items() for _ in range(n)] for k in keys]

    def build() -> Any:
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        retriever.index(corpus, show_progress=False)
        return retriever

    retriever, wall, cpu = _timed(build)
    retriever.save(str(tmp / "bm25s"))
    vocab = retriever.vocab_dict
    times, tops = [], []
    for query in queries:
        t0 = time.perf_counter()
        known = [t for t in query if t in vocab]
        if known:
            ids, _scores = retriever.retrieve(
                [known], k=min(100, len(keys)), show_progress=False, n_threads=1
            )
            top = [keys[int(i)] for i in ids[0][:10]]
        else:
            top = []
        times.append(time.perf_counter() - t0)
        tops.append(top)
    _, update, _cpu = _timed(build)  # no update: the whole index again
    return {
        "build": (wall, cpu), "size": _size(tmp / "bm25s"), "query": times, "update": update,
        "tops": tops, "how": "rebuild (no update)",
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", default="sqlfluff/sqlfluff")
    ap.add_argument("--repos-dir", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    git_dir = args.repos_dir / args.repo.replace("/", "+") / "repo"
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    rows = sorted((r for r in rows if r["repo"] == args.repo), key=lambda r: r["created_at"])
    commit = rows[-1]["base_commit"]
    entries = [
        e
        for e in gitio.ls_tree(git_dir, commit)
        if not skip_path(e.path) and not too_big(e.path, e.size)
    ]
    docs: dict[str, Counter[str]] = {}
    for entry, data in zip(
        entries, gitio.read_blobs(git_dir, [e.blob for e in entries]), strict=True
    ):
        if data is None or is_binary(data):
            continue
        counts = term_counts(entry.path + "\n" + data.decode("utf-8", "replace"))
        if counts:
            docs[entry.path] = counts
    queries = [{t: 1.0 for t in dict.fromkeys(tokens(r["problem_statement"]))} for r in rows]
    print(
        f"BM25 libraries on {args.repo} at {commit[:12]}: {len(docs)} documents, "
        f"{sum(sum(c.values()) for c in docs.values())} term occurrences, {len(queries)} queries"
    )
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tmp = Path(tempfile.mkdtemp(prefix="errands-bench-bm25-"))
    try:
        results = {"ours": _ours(docs, queries, tmp)}
        for name, run in (("tantivy", _tantivy), ("bm25s", _bm25s)):
            got = run(docs, queries, tmp)
            if got is None:
                print(f"  {name}: not installed, skipped")
            else:
                results[name] = got
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ours = results["ours"]["tops"]
    print(
        f"  {'':8} {'build s':>8} {'(CPU s)':>8} {'size MB':>8} {'query ms':>9} "
        f"{'update ms':>10}  {'top-10 overlap':>14}  update is"
    )
    for name, r in results.items():
        overlap = statistics.fmean(
            len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(r["tops"], ours, strict=True)
        )
        print(
            f"  {name:8} {r['build'][0]:>8.2f} {r['build'][1]:>8.2f} {r['size'] / 1e6:>8.1f} "
            f"{statistics.median(r['query']) * 1000:>9.1f} {r['update'] * 1000:>10.1f}  "
            f"{overlap:>14.2f}  {r['how']}"
        )
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        "  build: from term counts already made (tokenising is shared and left out); "
        "query: median, top 100; overlap: share of our top 10 in its top 10"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
