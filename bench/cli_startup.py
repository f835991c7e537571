"""How long a CLI command takes to start, next to Python's own start-up.

Runs ``errands --help``, ``errands task list`` (a temporary ``ERRANDS_HOME``, SQLite, no
Redis) and ``errands index`` after a one-file commit (a project made of a clone of this
repository, indexed once before: the index update a developer runs by hand) as subprocesses
N times each, next to ``python -c pass``, and prints the median wall time and CPU time (user
+ system) of each and their ratios to the baseline, with the machine's conditions (Python,
CPUs, load average): on a busy machine the CPU time is the steadier figure. A first ``task
list`` creates the store and a first ``index`` builds the index; neither is counted, nor is
the commit before each ``index``. ``--importtime`` also prints the slowest imports of
``import errands.cli`` and of ``task list`` (``python -X importtime``).

Usage (from the repository root)::

    python bench/cli_startup.py [--runs 15] [--importtime]
    CLI_STARTUP_SRC=/another/checkout/src python bench/cli_startup.py   # e.g. an older commit

Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIXES = ("ERRANDS_", "OPENAI_", "ANTHROPIC_")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env["ERRANDS_HOME"] = str(home)
    src = os.environ.get("CLI_STARTUP_SRC", str(ROOT / "src"))  # to compare another checkout
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run: on a busy machine the CPU time
    says what the command costs, the wall time what a user waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _project(tmp: Path, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A clone of this repository added as project ``bench`` and indexed once; the clone
    and the environment whose local origins allow it."""
    repo = tmp / "origins" / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    for key, value in (("user.name", "bench"), ("user.email", "bench@localhost")):
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    env = {**env, "ERRANDS_LOCAL_ORIGINS": str(repo.parent)}
    errands = [sys.executable, "-m", "errands.cli"]
    for argv in (["project", "add", str(repo), "--name", "bench"], ["index", "bench"]):
        subprocess.run([*errands, *argv], env=env, check=True, capture_output=True)
    return repo, env


def _commit_one_file(repo: Path, n: int) -> None:
    with (repo / "src" / "errands" / "ids.py").open("a") as handle:
        handle.write(f"\n\ndef bench_change_{n}() -> int:\n    return {n}\n")
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", f"change {n}"], check=True)


def _slowest_imports(argv: list[str], env: dict[str, str], top: int = 12) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            # Only packages imported at the top of their own tree, the ones one can act on.
            if len(name) - len(name.lstrip()) <= 3:
                rows.append((int(parts[1]), name.strip()))
    rows.sort(reverse=True)
    return [f"{us / 1000:8.1f} ms  {name}" for us, name in rows[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    parser.add_argument("--importtime", action="store_true", help="also list slow imports")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = _env(Path(tmp) / "home")
        errands = [sys.executable, "-m", "errands.cli"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "errands --help": [*errands, "--help"],
            "errands task list": [*errands, "task", "list"],
        }
        _run(commands["errands task list"], env)  # creates and migrates the store
        repo, index_env = _project(Path(tmp), env)
        commands["errands index (1 file)"] = [*errands, "index", "bench"]
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for n in range(args.runs):  # interleaved, so a burst of load hits all alike
            for name, argv in commands.items():
                if name.startswith("errands index"):
                    _commit_one_file(repo, n)
                wall, cpu = _run(argv, index_env)
                walls[name].append(wall)
                cpus[name].append(cpu)

        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        print(
            f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPU(s), load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; "
            f"median of {args.runs} runs each, wall time of a subprocess, SQLite store"
        )
        base_wall = statistics.median(walls["python -c pass"])
        base_cpu = statistics.median(cpus["python -c pass"])
        for name in commands:
            wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
            print(
                f"  {name:<23} wall {wall * 1000:5.0f} ms (min {min(walls[name]) * 1000:.0f}) "
                f"{wall / base_wall:4.1f}x baseline · CPU {cpu * 1000:5.0f} ms "
                f"{cpu / base_cpu:4.1f}x baseline"
            )
        if args.importtime:
            for title, argv in (
                ("import errands.cli", ["-c", "import errands.cli"]),
                ("errands task list", ["-m", "errands.cli", "task", "list"]),
            ):
                print(f"\nSlowest imports of {title} (cumulative, top-level only):")
                print("\n".join(_slowest_imports(argv, env)))


if __name__ == "__main__":
    main()
