"""Time to a ready workspace: plain ``git clone --no-local`` versus Errands' workspace pool.

Generates (deterministically, with ``git fast-import``) a repository of ~5,000 files and a
long history, then measures in one run, side by side:

(a) ``git clone --no-local`` of it (the median of a few clones);
(b) Errands' first workspace of a project: ``Mirror.create`` (which fetches everything),
    an up-to-date ``Mirror.fetch``, and the first ``WorkspacePool.acquire`` — nothing is
    parked yet, so a full checkout;
(b') the same first job when ``WorkspacePool.prewarm`` parked a tree beforehand (e.g.
     while the project was being indexed);
(c) subsequent workspaces: between two jobs the base branch moves by one commit touching a
    few files; the previous job's workspace is released and the next job acquires one for
    a new task branch at the new base (median and p95 over the rounds).

Usage (from the repository root)::

    python bench/workspace.py [--tmp DIR] [--files 5000] [--commits 3000] [--rounds 10]

Timings are printed, never asserted. The target (issue 4): a subsequent workspace at least
20x faster than the plain clone, and under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from errands.git import Mirror, WorkspacePool  # noqa: E402

SEED = 20240604
BRANCH = "main"
# Nothing from the developer's git configuration may change what is measured.
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}

# A commit for fast-import: its message and the new content of the files it changes.
Commit = tuple[str, dict[str, list[str]]]

WORDS = [
    *("alpha", "beta", "gamma", "delta", "value", "index", "total", "count", "items"),
    *("result", "cache", "buffer", "record", "parser", "token", "window", "frame"),
    *("stream", "handle", "scope", "limit", "offset", "cursor"),
]


# -- the repository ----------------------------------------------------------------------------


def run(cwd: Path, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env=GIT_ENV, input=input, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def file_path(i: int) -> str:
    return f"src/pkg{i // 500:02d}/mod{(i // 50) % 10:02d}/file_{i:05d}.py"


def file_body(rng: random.Random, i: int) -> list[str]:
    lines = [f'"""Module {i}."""', ""]
    for f in range(rng.randint(6, 30)):
        a, b = rng.sample(WORDS, 2)
        lines += [
            f"def {a}_{b}_{f}(x: int) -> int:",
            f"    {a} = x * {rng.randint(2, 99)}",
            f"    return {a} + {rng.randint(0, 999)}  # {b}",
            "",
        ]
    return lines


def encode(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


class History:
    """Writes commits on ``main`` of a bare repository through one ``git fast-import``."""

    def __init__(self, repo: Path, rng: random.Random, files: dict[str, list[str]]) -> None:
        self.repo = repo
        self.rng = rng
        self.files = files
        self.when = 1_600_000_000

    def stream(self, commits: Iterator[Commit], first: bool) -> bytes:
        out: list[bytes] = []
        for n, (message, changes) in enumerate(commits):
            self.when += 60
            msg = message.encode()
            out.append(
                b"commit refs/heads/%s\ncommitter Bench <bench@example.com> %d +0000\n"
                b"data %d\n%s\n" % (BRANCH.encode(), self.when, len(msg), msg)
            )
            if n == 0 and not first:
                out.append(b"from refs/heads/%s^0\n" % BRANCH.encode())
            for path, lines in changes.items():
                data = encode(lines)
                out.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
            out.append(b"\n")
        return b"".join(out)

    def write(self, commits: Iterator[Commit], first: bool) -> None:
        run(self.repo, "git", "fast-import", "--quiet", input=self.stream(commits, first))

    def small_changes(self, count: int, per_commit: int = 3) -> Iterator[Commit]:
        """``count`` commits, each editing one line of a few files."""
        paths = sorted(self.files)
        for c in range(count):
            changes: dict[str, list[str]] = {}
            for path in self.rng.sample(paths, self.rng.randint(1, per_commit)):
                lines = self.files[path]
                at = self.rng.randrange(2, len(lines))
                lines[at] = f"# change {c}: {' '.join(self.rng.sample(WORDS, 3))}"
                changes[path] = list(lines)
            yield f"Change {c}\n\nTouches {', '.join(sorted(changes))}.\n", changes


def generate(origin: Path, n_files: int, n_commits: int) -> History:
    rng = random.Random(SEED)
    run(origin.parent, "git", "init", "--quiet", "--bare", "--initial-branch", BRANCH, str(origin))
    files = {file_path(i): file_body(rng, i) for i in range(n_files)}
    files["README.md"] = ["# generated", "", "A repository for bench/workspace.py."]
    history = History(origin, rng, files)

    def everything() -> Iterator[Commit]:
        yield "Initial import\n", {p: list(lines) for p, lines in files.items()}
        yield from history.small_changes(n_commits - 1)

    history.write(everything(), first=True)
    # fast-import packs loosely; repack as a real, gc'd repository would be.
    run(origin, "git", "repack", "-a", "-d", "-q")
    return history


# -- measuring ---------------------------------------------------------------------------------


@contextmanager
def timer(into: list[float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into.append(time.perf_counter() - start)


def once(fn: Callable[[], object]) -> float:
    took: list[float] = []
    with timer(took):
        fn()
    return took[0]


def check(ok: bool, problem: str) -> None:
    """Not a timing assertion: a benchmark of a wrong workspace would mean nothing."""
    if not ok:
        raise SystemExit(f"broken: {problem}")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def filesystem(path: Path) -> str:
    out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=False)
    rows = out.stdout.splitlines()
    if out.returncode != 0 or len(rows) < 2:
        return "unknown"
    fields = rows[1].split()
    return f"{fields[1]} ({fields[0]} on {fields[-1]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", type=Path, default=None, help="where to work (default: $TMPDIR)")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--clones", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="errands-bench-ws-", dir=args.tmp)).resolve()
    try:
        bench(work, args)
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, args: argparse.Namespace) -> None:
    origin = work / "origin.git"
    generate_s = [0.0]
    with timer(generate_s):
        history = generate(origin, args.files, args.commits)
    tracked = len(run(origin, "git", "ls-tree", "-r", "--name-only", BRANCH).splitlines())
    commits = int(run(origin, "git", "rev-list", "--count", BRANCH).strip())

    print("conditions")
    print(
        f"  repository     {tracked:,} files, {commits:,} commits, {du(origin) / 1e6:.1f} MB packed"
    )
    print(f"  checkout size  {sum(len(encode(v)) for v in history.files.values()) / 1e6:.1f} MB")
    print(f"  generated in   {generate_s[-1]:.1f} s (git fast-import)")
    print(f"  temp dir       {work}")
    print(f"  filesystem     {filesystem(work)}")
    print(f"  cpus           {os.cpu_count()} ({platform.machine()}), {platform.platform()}")
    print(f"  git            {run(work, 'git', '--version').strip()}")
    print("  page cache     warm (nothing dropped); sync before each timed step")

    # This machine's file creation speed drifts with whatever else runs on it; clones are
    # interleaved with the pool's rounds so that both see the same conditions, and dirty
    # pages are written back before each timed step so none pays for an earlier one.
    clones: list[float] = []
    clone_at = {round(i * args.rounds / max(1, args.clones - 1)) for i in range(args.clones)}

    def plain_clone() -> None:
        target = work / "clone"
        os.sync()
        with timer(clones):
            run(work, "git", "clone", "--quiet", "--no-local", str(origin), str(target))
        shutil.rmtree(target)

    # (a) plain clone, and (b) Errands' first workspace of a project
    if 0 in clone_at:
        plain_clone()
    os.sync()
    created: list[float] = []
    with timer(created):
        mirror = Mirror.create(work / "data" / "mirror.git", str(origin))
    mirror_s = created[0]
    fetch_s = once(mirror.fetch)
    pool = WorkspacePool(mirror, work / "data" / "workspaces" / "project-1", keep=4)
    base = mirror.base_ref(BRANCH)
    os.sync()
    acquired: list[float] = []
    with timer(acquired):
        workspace = pool.acquire("job-0", "errands/0-first", base)
    first = acquired[-1]
    check(workspace.head() == mirror.resolve(base), "the first workspace is not at the base")

    # (c) subsequent workspaces: the base moves a little between jobs
    released: list[float] = []
    fetched: list[float] = []
    acquired = []
    for n in range(1, args.rounds + 1):
        (workspace.path / "job-output.txt").write_text("a previous job's leftovers\n")
        history.write(history.small_changes(1), first=False)
        os.sync()
        with timer(fetched):
            mirror.fetch()
        os.sync()
        with timer(released):
            pool.release(workspace)
        os.sync()
        with timer(acquired):
            workspace = pool.acquire(f"job-{n}", f"errands/{n}-next", base)
        check(workspace.head() == mirror.resolve(base), f"round {n}: not at the new base")
        check(workspace.changed_files() == [], f"round {n}: leftovers in the workspace")
        if n in clone_at:
            plain_clone()
    pool.release(workspace)

    # (b') the project's first job once more, its tree prewarmed off the job's path
    warm_pool = WorkspacePool(mirror, work / "data" / "workspaces" / "project-2", keep=1)
    os.sync()
    prewarm_s = once(lambda: warm_pool.prewarm(base))
    os.sync()
    warm_first = once(lambda: warm_pool.acquire("job-0", "errands/0-warm", base))

    clone = statistics.median(clones)
    subsequent = statistics.median(acquired)
    cycle = statistics.median(r + a for r, a in zip(released, acquired, strict=True))

    rows = [
        ("(a) git clone --no-local", f"median of {len(clones)}", clone, max(clones)),
        ("(b) Mirror.create (+ first fetch)", "once per project", mirror_s, mirror_s),
        ("    Mirror.fetch, up to date", "once", fetch_s, fetch_s),
        ("    first acquire (full checkout)", "once per project", first, first),
        ("    first workspace, total", "create + acquire", mirror_s + first, mirror_s + first),
        ("(b') prewarm (off the job's path)", "once per project", prewarm_s, prewarm_s),
        ("     first acquire after prewarm", "once per project", warm_first, warm_first),
        (
            "(c) fetch, base moved 1 commit",
            f"median/p95 of {len(fetched)}",
            statistics.median(fetched),
            p95(fetched),
        ),
        (
            "    release (scrub + park)",
            f"median/p95 of {len(released)}",
            statistics.median(released),
            p95(released),
        ),
        (
            "    acquire (reuse + checkout)",
            f"median/p95 of {len(acquired)}",
            subsequent,
            p95(acquired),
        ),
        ("    release + acquire", "median", cycle, cycle),
    ]
    print("\ntime to a ready workspace (seconds)")
    print(f"  {'':36} {'':22} {'median':>8} {'max/p95':>8}")
    for label, how, median, worst in rows:
        print(f"  {label:36} {how:22} {median:8.3f} {worst:8.3f}")

    print("\nratios")
    print(f"  clone / subsequent acquire          {clone / subsequent:8.1f}x")
    print(f"  clone / (release + acquire)         {clone / cycle:8.1f}x")
    print(f"  clone / first workspace total       {clone / (mirror_s + first):8.1f}x")
    print(f"  clone / first acquire after prewarm {clone / warm_first:8.1f}x")
    print("  target: subsequent >= 20x faster than the clone, and < 0.5 s")
    met = clone / subsequent >= 20 and subsequent < 0.5
    print(f"  subsequent acquire: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
