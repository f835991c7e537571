"""Every CLI command is a new process: what it imports before doing anything is paid on every
call. These tests look at which modules a command loaded (never at how long it took; the
figures are in bench/cli_startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Each is slow to import (or to run at import, like the argon2 dummy hash) and needed by
# none of these commands.
HEAVY = (
    "alembic",
    "argon2",
    "cryptography",
    "httpx",
    "jwt",
    "pydantic_ai",
    "openai",
    "anthropic",
    "google",
    "fastapi",
    "uvicorn",
    "tree_sitter",
    "redis",
)

REPORT = (
    "import json, sys\n"
    "sys.argv = ['errands', *sys.argv[1:]]\n"
    "import errands.cli\n"
    "if len(sys.argv) > 1:\n"
    "    try:\n"
    "        errands.cli.app()\n"
    "    except SystemExit:\n"
    "        pass\n"
    "sys.stderr.write(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERRANDS_", "OPENAI_"))}
    env["ERRANDS_HOME"] = str(home)
    return env


def _loaded(home: Path, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", REPORT, *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stderr.splitlines()[-1]))


def test_importing_the_cli_loads_nothing_heavy(home: Path) -> None:
    loaded = _loaded(home)
    assert loaded.isdisjoint({*HEAVY, "sqlalchemy", "pydantic_settings"}), loaded


def test_task_list_loads_only_the_store(home: Path) -> None:
    _loaded(home, "task", "list")  # the first command creates the store (with alembic)
    loaded = _loaded(home, "task", "list")
    assert "sqlalchemy" in loaded  # it did read the store
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_errands_index_loads_no_agent_stack(home: Path, sample_repo: Path) -> None:
    """`errands index` after a commit re-reads one file: it took 3.2 s, 1.1 s of it importing
    pydantic-ai through the job context it only names in a type annotation."""
    subprocess.run(
        [sys.executable, "-m", "errands.cli", "project", "add", str(sample_repo), "--name", "calc"],
        env={**_env(home), "ERRANDS_LOCAL_ORIGINS": str(sample_repo.parent)},
        capture_output=True,
        timeout=120,
        check=True,
    )
    loaded = _loaded(home, "index", "calc")
    assert {"sqlalchemy", "tree_sitter"} <= loaded  # it did index, from the store
    assert loaded.isdisjoint(set(HEAVY) - {"tree_sitter"}), sorted(loaded & set(HEAVY))
    assert (home / "index" / "project-1.idx").is_file()


def test_the_written_head_is_alembics_head() -> None:
    # The quick check that a store is up to date reads the migration files itself; it must
    # agree with alembic, or a store one migration behind would open without it.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from errands.store.db import MIGRATIONS, written_head

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert written_head() == ScriptDirectory.from_config(config).get_current_head()
