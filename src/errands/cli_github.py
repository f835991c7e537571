"""``errands github …``: a project's GitHub side from the command line — repositories,
installations, the issues and pull requests its tasks are linked to, one issue imported as a
task, a task synced with its pull request again. Like the rest of the CLI it works on the local
store, and imports the store and the GitHub client only when a command runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from errands.settings import Settings

github_app = typer.Typer(
    help="GitHub: repositories, linked issues and pull requests, imports and resyncs.",
    no_args_is_help=True,
)

ProjectArg = Annotated[str, typer.Argument(help="Project id or name.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@github_app.command("add")
def add(
    repository: Annotated[str, typer.Argument(help="owner/name", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Project name (default: the repo's).")] = None,
    installation: Annotated[
        int | None, typer.Option(help="The GitHub App installation that reaches it.")
    ] = None,
) -> None:
    """A project on a GitHub repository; its open issues are imported as tasks."""
    from errands.cli import _db, out
    from errands.github import projects

    with _db() as (settings, db):
        with db.session() as session:
            found = installation or projects.known_installation(session, repository)
        with out.status(f"Asking GitHub about {repository}…"):
            info = projects.describe(settings, repository, found)
        with db.session() as session:
            project = projects.add_project(session, settings, info, name=name)
            summary = f"Project [bold]{project.name}[/] (id {project.id}) on {info.full_name}"
    out.print(f"{summary}; indexing and the import of its open issues are queued.")


@github_app.command("installations")
def installations(as_json: JsonOpt = False) -> None:
    """The GitHub App's installations (as its webhooks told) and the repositories they reach."""
    from sqlalchemy import select

    from errands.cli import _print_json, _run, out
    from errands.store import GitHubInstallation

    rows: list[dict[str, Any]] = _run(
        lambda s, _: [
            {
                "id": r.id,
                "account": r.account,
                "repositories": list(r.repositories),
                "active": r.active,
            }
            for r in s.scalars(select(GitHubInstallation).order_by(GitHubInstallation.id))
        ]
    )
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "account", "repositories", "active")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["account"]),
            ", ".join(r["repositories"]) or "-",
            "yes" if r["active"] else "no",
        )
    out.print(table)


@github_app.command("tasks")
def tasks(project: ProjectArg, as_json: JsonOpt = False) -> None:
    """The project's tasks linked to GitHub: their issues and pull requests."""
    from errands.cli import _print_json, _run, out
    from errands.github import manage

    rows = _run(
        lambda s, _: [
            {
                "id": t.id,
                "title": t.title,
                "state": t.state,
                "issue": t.github_issue,
                "pull_request": t.github_pr,
                "pull_request_url": t.github_pr_url,
                "base_moved_to": t.base_moved_to,
            }
            for t in manage.linked(s, project)
        ]
    )
    if as_json:
        _print_json(rows)
        return
    table = Table("task", "state", "issue", "pull request", "title")
    for r in rows:
        issue, pull = r["issue"], r["pull_request"]
        table.add_row(
            str(r["id"]),
            str(r["state"]),
            f"#{issue}" if issue else "-",
            f"#{pull}" if pull else "-",
            str(r["title"]),
        )
    out.print(table)


@github_app.command("import")
def import_(
    project: ProjectArg,
    issue: Annotated[
        int | None, typer.Option(help="Import this one issue (default: every open issue).")
    ] = None,
    start: Annotated[bool, typer.Option(help="Start the imported issue's research.")] = False,
) -> None:
    """Import one issue as a task now, or have the project's open issues imported again."""
    from errands.cli import _db, _run, out

    if issue is None:
        if start:
            raise typer.BadParameter("--start needs --issue.")
        from errands.github import projects
        from errands.workflow import actions

        _run(lambda s, settings: projects.reimport(s, settings, actions.get_project(s, project)))
        out.print("The open issues will be imported again (tasks that exist are kept).")
        return
    from errands.github import manage

    with _db() as (settings, db), out.status(f"Importing issue #{issue}…"):
        task, created = manage.import_issue(settings, db, project, issue, start=start)
    if created:
        out.print(f"Issue #{issue} is task {task}" + ("; research queued." if start else "."))
    else:
        out.print(f"Issue #{issue} already is task {task}.")


@github_app.command("resync")
def resync(task_id: Annotated[int, typer.Argument(help="Task id.", show_default=False)]) -> None:
    """Check a task's pull request (and issue) against GitHub again and write what differs:
    its progress note, Errands' comments and their threads, verdicts given in Errands."""
    from errands.cli import _run, out
    from errands.github import manage

    _run(lambda s, settings: manage.resync(s, settings, task_id))
    out.print(f"Task {task_id} will be synced with GitHub by the project's github job.")


@github_app.command("sync")
def sync(project: ProjectArg) -> None:
    """Queue the project's github job (webhook deliveries waiting, and everything going out)."""
    from errands.cli import _run, out
    from errands.github.intake import request_sync
    from errands.workflow import actions

    def work(session: Session, settings: Settings) -> str:
        found = actions.get_project(session, project)
        if found.github_repo is None:
            from errands.errors import Conflict

            raise Conflict(f"Project {found.name} is not on GitHub.")
        request_sync(session, settings, found.id)
        return found.name

    out.print(f"The github job of {_run(work)} is queued.")
