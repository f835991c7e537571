"""POST /api/projects/{project}/locate answers from a project's code index, which names its
files and symbols: another organization learns nothing from it, not even that the project
exists (the same 404 as a project that does not)."""

from __future__ import annotations

from errands.workflow.index import index_project
from tests.accounts.conftest import World

TRACEBACK = 'Traceback (most recent call last):\n  File "calc.py", line 2, in add\nTypeError'


def _index(world: World) -> None:
    settings, db = world.app.state.settings, world.app.state.db
    index_project(settings, db, world.project_id, emit=lambda *_: None)


def test_another_organization_gets_the_404_of_a_project_that_does_not_exist(
    world: World,
) -> None:
    _index(world)
    client = world.client()
    body = {"text": TRACEBACK, "limit": 5}
    mine = client.post(
        f"/api/projects/{world.project}/locate", json=body, headers=world.bearer(world.viewer_token)
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()[0]["path"] == "calc.py"  # there is something to leak

    beta = world.bearer(world.outsider_token)
    for ref in (world.project, str(world.project_id)):
        stolen = client.post(f"/api/projects/{ref}/locate", json=body, headers=beta)
        missing_ref = "no-such-project" if ref == world.project else "999999"
        missing = client.post(f"/api/projects/{missing_ref}/locate", json=body, headers=beta)
        assert stolen.status_code == missing.status_code == 404, stolen.text
        assert stolen.text == missing.text.replace(missing_ref, ref)
        assert "calc" not in stolen.text and "add" not in stolen.text
    # Nor without a body the route would accept: refused before the body is read.
    assert client.post(f"/api/projects/{world.project}/locate", headers=beta).status_code == 404
    nobody = client.post(f"/api/projects/{world.project}/locate", json=body)
    assert nobody.status_code == 401 and "calc.py" not in nobody.text
