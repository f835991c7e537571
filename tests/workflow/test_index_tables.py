"""The index job makes a cold build's lookup tables (a save no longer makes them: it kept the
building process's peak up), so the research that reads that very index does not wait for
them; `errands index`, which exits without a query, does not make them."""

from __future__ import annotations

from pathlib import Path

import httpx

from errands import runtime
from errands.workflow.code_index import load_index
from errands.workflow.index import index_project
from tests.support import add_project, running_server, settings_for, wait_for


def test_the_index_job_makes_the_lookup_tables_not_the_first_query(
    home: Path, sample_repo: Path
) -> None:
    settings = settings_for(home, "http://127.0.0.1:9/v1")  # no model call is made
    with running_server(settings) as url:
        client = httpx.Client(base_url=url, timeout=30)
        project_id = add_project(client, sample_repo)
        wait_for(
            lambda: client.get(f"/api/projects/{project_id}").json()["indexed_at"],
            what="the index job",
        )
        # The index the job built and saved, as this process (the server's) holds it.
        held = load_index(settings, project_id)
        assert held is not None
        assert held._derived is not None


def test_errands_index_does_not_make_them(home: Path, sample_repo: Path) -> None:
    settings = settings_for(home, "http://127.0.0.1:9/v1")
    db = runtime.open_database(settings)
    with running_server(settings, embedded_worker=False) as url:
        project_id = add_project(httpx.Client(base_url=url, timeout=30), sample_repo)
    code = index_project(settings, db, project_id, emit=lambda *_: None)
    assert code._derived is None
    db.dispose()
