"""`errands login URL` keeps a token for a remote server; `errands whoami` asks it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import running_server, settings_for


def errands(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ERRANDS_HOME": str(home / "cli-home")}
    return subprocess.run(
        [sys.executable, "-m", "errands.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_login_stores_a_private_token_and_whoami_uses_it(home: Path) -> None:
    with running_server(settings_for(home, "http://127.0.0.1:9/v1")) as url:
        signup = httpx.post(
            f"{url}/api/auth/signup",
            json={
                "email": "dev@example.test",
                "password": "correct horse battery",
                "org_name": "Dev",
            },
        )
        token = httpx.post(
            f"{url}/api/tokens",
            json={"name": "laptop"},
            cookies=signup.cookies,
            headers={"X-CSRF-Token": signup.json()["csrf_token"]},
        ).json()["token"]

        wrong = errands(home, "login", url, "--token", "ert_not-a-token")
        assert wrong.returncode != 0 and "refused the token" in wrong.stdout + wrong.stderr
        done = errands(home, "login", url, "--token", token)
        assert done.returncode == 0, done.stderr
        assert "dev@example.test (Dev, owner)" in done.stdout
        stored = home / "cli-home" / "remote.toml"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600

        who = errands(home, "whoami")
        assert who.returncode == 0, who.stderr
        assert f"dev@example.test — Dev (owner) on {url}" in who.stdout
        assert token not in who.stdout + who.stderr

        assert errands(home, "logout").returncode == 0
        assert errands(home, "whoami").returncode != 0
