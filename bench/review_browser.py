"""Time to the first usable, highlighted diff of the review page in Chromium, beside the
board page measured in the same run.

Builds the branch of ``bench/review_page.py`` (5 subtasks; 3,000 changed lines, and with
``--scale 10`` 30,000), records the task as in review in a fresh store, starts the web app on
loopback (no worker, no model) and opens pages in Debian's Chromium through Playwright:

- ``board``: ``/`` until its first column is on screen;
- ``subtask 1``, ``whole branch``: the review page until the first diff table on screen has
  highlighted code (a ``td.code`` holding a coloured token) — what a reader can start on.

Each round opens every page in turn (so a busy moment of the machine hits them alike):

- ``first``: a new browser context (nothing cached in the browser) and the server's caches
  emptied (highlighting, and ``git diff`` output by commit ids), as after a restart or for a
  branch nobody has looked at: a first view runs git, parses and lexes what it prints. Nothing
  is prepared ahead by the job that made the commits.
- ``repeat``: the same page reloaded in that context (the browser's cache and the server's
  warm).

It prints the median of ``--rounds`` of each, the page's HTML size, the issue's target (300 ms
for 3,000 lines, 1 s for 30,000) and each figure as a multiple of the board's in the same run
(the targets were set against a board of about 150 ms first / 100 ms repeat on a quiet machine;
on a loaded one compare the multiples). Times are the page's own clock (``performance.now()``
when the condition first holds, from the navigation's start), polled every animation frame.
Nothing is asserted. The load average is printed before and after.

Usage (from the repository root)::

    python bench/review_browser.py [--scale 1|10] [--rounds 5] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.review_page import build_repo, git, load, record_task  # noqa: E402
from playwright.sync_api import Browser, sync_playwright  # noqa: E402
from tests.support import running_server  # noqa: E402

from errands.git import diffcache  # noqa: E402
from errands.settings import Settings  # noqa: E402
from errands.web.ui import diffview  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
BOARD_READY = """() => {
  const c = document.querySelector('[data-column]');
  return c && c.getBoundingClientRect().top < innerHeight ? performance.now() : null;
}"""
DIFF_READY = """() => {
  for (const t of document.querySelectorAll('#review table.diff')) {
    const box = t.getBoundingClientRect();
    if (box.top >= innerHeight) break;
    if (box.bottom > 0 && t.querySelector('td.code span[class]')) return performance.now();
  }
  return null;
}"""


def view(browser: Browser, url: str, ready: str) -> tuple[float, float, int]:
    """(first view ms, repeat ms, HTML bytes) in a new browser context."""
    diffview.clear_cache()
    diffcache.clear()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    response = page.goto(url, wait_until="commit")
    size = len(response.body()) if response else 0
    first = float(page.wait_for_function(ready, polling="raf", timeout=120_000).json_value())
    page.reload(wait_until="commit")
    repeat = float(page.wait_for_function(ready, polling="raf", timeout=120_000).json_value())
    context.close()
    return first, repeat, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()
    target = 300.0 if args.scale == 1 else 1000.0
    with tempfile.TemporaryDirectory(dir=args.tmp) as scratch:
        root = Path(scratch)
        repo, base, shas = build_repo(root, args.scale)
        settings = Settings(home=root / "home")
        task_id = record_task(settings, repo, base, shas)
        changed = sum(
            int(n) for line in _numstat(repo, base, shas[-1]) for n in line.split("\t")[:2]
        )
        with running_server(settings) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            review = f"{url}/tasks/{task_id}/review"
            pages = [
                ("board", f"{url}/", BOARD_READY),
                ("review: subtask 1", f"{review}?view=subtask&subtask=1", DIFF_READY),
                ("review: whole branch", f"{review}?view=all", DIFF_READY),
            ]
            print(f"Chromium, 5 subtasks, {changed:,} changed lines (scale {args.scale})")
            print(f"  before: {load()}")
            # The process's one-off work (templates, git) apart from the figures.
            view(browser, pages[1][1], DIFF_READY)
            figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name, *_ in pages}
            for _ in range(args.rounds):
                for name, address, ready in pages:
                    figures[name].append(view(browser, address, ready))
            board_first = statistics.median(f for f, _, _ in figures["board"])
            board_repeat = statistics.median(r for _, r, _ in figures["board"])
            print(
                f"  medians of {args.rounds}; target for a review page {target:,.0f} ms "
                "(first and repeat); × = multiple of the board's figure"
            )
            for name, *_ in pages:
                first = statistics.median(f for f, _, _ in figures[name])
                repeat = statistics.median(r for _, r, _ in figures[name])
                size = figures[name][-1][2]
                verdict = ""
                if name != "board":
                    met = "meets" if max(first, repeat) <= target else "misses"
                    verdict = f"  {met} {target:,.0f} ms"
                print(
                    f"  {name:22} first {first:7.1f} ms ({first / board_first:4.1f}×)"
                    f"  repeat {repeat:7.1f} ms ({repeat / board_repeat:4.1f}×)"
                    f"  {size / 1024:5,.0f} KiB of HTML{verdict}"
                )
            print(f"  after:  {load()}")
            browser.close()


def _numstat(repo: Path, base: str, tip: str) -> list[str]:
    return [line for line in git(repo, "diff", "--numstat", base, tip).splitlines() if line]


if __name__ == "__main__":
    main()
