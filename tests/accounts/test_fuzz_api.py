"""Schemathesis fuzzes the JSON API from its OpenAPI schema, against the real server on
loopback, signed in as an organization's owner with an API token: no answer may be a server
error, every status must be one the schema documents for that operation, and every answer must
match its documented schema. Bounded: a few examples per operation, a fixed seed, a time cap."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from errands.web.app import create_app
from tests.support import running_server, settings_for

# Operations that would reach the network (cloning a fuzzed URL, GitHub's API) or end the
# fuzzer's own credentials; the access-control walk covers them.
EXCLUDED = (
    r"^/api/projects$|^/api/github/projects$|^/api/tokens/\{token_id\}$"
    r"|^/api/auth/logout|^/api/members/"
)


def test_the_api_survives_fuzzing(home: Path, sample_repo: Path) -> None:
    st = shutil.which("st") or shutil.which("schemathesis")
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    settings = settings_for(home, "http://127.0.0.1:9/v1", local_origins=[sample_repo.parent])
    with running_server(settings) as url:
        signup = httpx.post(
            f"{url}/api/auth/signup",
            json={"email": "fuzz@example.test", "password": "correct horse battery"},
        )
        token = httpx.post(
            f"{url}/api/tokens",
            json={"name": "fuzz"},
            cookies=signup.cookies,
            headers={"X-CSRF-Token": signup.json()["csrf_token"]},
        ).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        added = httpx.post(
            f"{url}/api/projects", json={"origin": str(sample_repo), "name": "calc"}, headers=auth
        )
        assert added.status_code == 201, added.text
        run = subprocess.run(
            [
                st,
                "run",
                f"{url}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance",
                "--exclude-path-regex",
                EXCLUDED,
                "--max-examples",
                "3",
                "--seed",
                "7",
                "--workers",
                "1",
                "--max-time",
                "50",
                "--request-timeout",
                "20",
                "--no-shrink",
            ],
            capture_output=True,
            text=True,
            cwd=home,  # its own cache directory goes there, not into the repository
            timeout=180,
            check=False,
        )
        Path(home, "schemathesis.txt").write_text(run.stdout)
        summary = run.stdout[-3000:]
        print(summary)
        assert run.returncode == 0, summary + run.stderr[-2000:]


def test_every_operation_documents_its_errors_in_the_one_error_shape(home: Path) -> None:
    schema = create_app(settings_for(home, "http://127.0.0.1:9/v1")).openapi()
    assert "HTTPValidationError" not in str(schema)  # FastAPI's shape, which we never send
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            # Every route can be refused by the browser guard; any with input, found invalid.
            assert "403" in responses, (method, path)
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (method, path, status)
