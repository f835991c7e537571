"""The ``errands`` command line. Reads and writes the store directly (the local default).

Every command starts a new process, so this module imports only what ``--help`` needs; each
command imports the store, the schemas and the workflow when it runs (see bench/cli_startup.py).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.table import Table

from errands.cli_github import github_app
from errands.domain import TaskState
from errands.errors import ConfigError, ErrandsError, InvalidInput

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from errands.git import Diff
    from errands.schemas import TaskPublic
    from errands.settings import Settings
    from errands.store import Database

T = TypeVar("T")

app = typer.Typer(
    help="Errands: hand off a programming task, answer the questions that matter, review a "
    "stack of commits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
project_app = typer.Typer(help="Repositories Errands works on.", no_args_is_help=True)
task_app = typer.Typer(help="Tasks: create, list, show.", no_args_is_help=True)


class _DefaultRun(typer.core.TyperGroup):
    """``errands eval DATASET …`` is ``errands eval run DATASET …``; ``errands eval compare``
    stays a command of its own."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click Context
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRun,
    help="Measure the whole workflow on SWE-bench-style instances: errands eval DATASET, "
    "errands eval compare A B.",
    no_args_is_help=True,
)
app.add_typer(project_app, name="project")
app.add_typer(task_app, name="task")
app.add_typer(eval_app, name="eval")
app.add_typer(github_app, name="github")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TaskArg = Annotated[int, typer.Argument(help="Task id.", show_default=False)]
RESTING = {TaskState.MERGED, TaskState.CANCELLED, TaskState.FAILED}
TASK_TEMPLATE = """\
Title of the task on this first line

## System context
What part of the system is this about; what exists today.

## Scope
In: ...
Out: ...

## Technical specifics
Files, APIs, constraints, conventions.

## Acceptance criteria
- ...
"""


# -- plumbing ---------------------------------------------------------------------------------


def _settings() -> Settings:
    from errands.settings import Settings

    return Settings()


@contextmanager
def _db() -> Iterator[tuple[Settings, Database]]:
    from errands import runtime

    settings = _settings()
    db = runtime.open_database(settings)
    try:
        yield settings, db
    finally:
        db.dispose()


def _run(work: Callable[[Session, Settings], T]) -> T:
    with _db() as (settings, db), db.session() as session:
        return work(session, settings)


def _print_json(value: Any) -> None:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        text = value.model_dump_json(indent=2)
    elif isinstance(value, list) and all(isinstance(v, BaseModel) for v in value):
        text = json.dumps([v.model_dump(mode="json") for v in value], indent=2)
    else:
        text = json.dumps(value, indent=2, default=str)
    sys.stdout.write(text + "\n")


def _task_public(session: Session, task_id: int) -> TaskPublic:
    from errands.schemas import TaskPublic
    from errands.workflow import actions

    return TaskPublic.of(*actions.task_with_jobs(session, task_id))


# -- server and worker ------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (ERRANDS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (ERRANDS_PORT).")] = None,
    worker: Annotated[bool, typer.Option(help="Run an embedded worker.")] = True,
) -> None:
    """Run the HTTP API (and an embedded worker, so this one command is enough)."""
    import uvicorn

    from errands.web.app import create_app

    settings = _settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app_ = create_app(settings, embedded_worker=worker)
    err.print(
        f"Errands on http://{host or settings.host}:{port or settings.port} "
        f"(data in {settings.home})"
    )
    uvicorn.run(app_, host=host or settings.host, port=port or settings.port, log_level="info")


@app.command("worker")
def worker_command() -> None:
    """Run a worker that picks up jobs from the store (start as many as you like)."""
    from errands import runtime

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with _db() as (settings, db):
        runtime.transport_of(db).ping()  # an unreachable Redis is a clear error, now
        worker = runtime.build_worker(runtime.build_services(settings, db))
        # A deploy's SIGTERM: stop taking jobs and give the running ones back for another
        # worker to resume, instead of leaving them to time out.
        signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
        err.print(f"Worker {worker.name}: {settings.worker_concurrency} slot(s); Ctrl-C to stop")
        try:
            worker.run_forever()
        except KeyboardInterrupt:
            worker.stop()


# -- projects ---------------------------------------------------------------------------------


@project_app.command("add")
def project_add(
    origin: Annotated[str, typer.Argument(help="Path of a local git repository, or a git URL.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: directory).")] = None,
    base_branch: Annotated[str | None, typer.Option(help="Branch to merge into.")] = None,
    verify: Annotated[
        list[str] | None, typer.Option("--verify", help="Verify command (repeatable).")
    ] = None,
    auto_execute: Annotated[
        bool, typer.Option(help="Execute as soon as questions are answered.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Add a repository; an index job learns its languages and verify commands."""
    from errands.schemas import ProjectPublic
    from errands.workflow import actions

    project = _run(
        lambda s, settings: ProjectPublic.of(
            actions.add_project(
                s,
                settings,
                origin,
                name=name,
                base_branch=base_branch,
                verify_commands=verify,
                auto_execute=auto_execute,
            ),
            settings,
        )
    )
    if as_json:
        _print_json(project)
    else:
        out.print(
            f"Project [bold]{project.name}[/] (id {project.id}) added; base branch "
            f"{project.base_branch}. Indexing is queued."
        )


@project_app.command("list")
def project_list(as_json: JsonOpt = False) -> None:
    """List projects."""
    from errands.schemas import ProjectPublic
    from errands.workflow import actions

    projects = _run(
        lambda s, settings: [ProjectPublic.of(p, settings) for p in actions.list_projects(s)]
    )
    if as_json:
        _print_json(projects)
        return
    table = Table("id", "name", "origin", "base", "files", "verify commands", "sandbox")
    for p in projects:
        assert p.effective is not None
        table.add_row(
            str(p.id),
            p.name,
            p.origin,
            p.base_branch,
            str(p.file_count),
            "; ".join(p.effective.verify_commands) or "-",
            p.effective.sandbox,
        )
    out.print(table)


@project_app.command("show")
def project_show(project: str, as_json: JsonOpt = False) -> None:
    """Show a project (by id or name)."""
    from errands.schemas import ProjectPublic
    from errands.workflow import actions

    p = _run(lambda s, settings: ProjectPublic.of(actions.get_project(s, project), settings))
    if as_json:
        _print_json(p)
        return
    out.print(f"[bold]{p.name}[/] (id {p.id}) — {p.origin}, base {p.base_branch}")
    languages = ", ".join(f"{k} {v}" for k, v in p.languages.items()) or "-"
    out.print(f"Files: {p.file_count}; languages: {languages}")
    out.print(f"Detected commands: {'; '.join(p.detected_commands) or '-'}")
    for d in p.detection:
        out.print(f"  {d.command} — because {d.reason}", highlight=False, markup=False)
    assert p.effective is not None
    e = p.effective
    out.print(f"Verify commands: {'; '.join(e.verify_commands) or '-'}")
    network = {
        "off": "",
        "allowlist": f" (network: {', '.join(e.setup_hosts) or 'no host'})",
        "host": " (network: the host's, all of it)",
    }.get(e.setup_egress, "")
    out.print(f"Setup commands{network}: {'; '.join(e.setup_commands) or '-'}")
    out.print(f"Sandbox: {e.sandbox}; command timeout: {e.command_timeout:.0f}s")
    out.print(f"Jobs running at once: at most {e.max_concurrent_jobs}")
    out.print(f"Models: research {e.research_model or '-'}; execute {e.execute_model or '-'}")
    out.print(f"Executors: execute {e.executor}; revise {e.revise_executor}")
    if p.repo_config:
        out.print(f"From .errands.toml: {p.repo_config}")
    out.print(f"Auto-execute: {p.auto_execute}; indexed: {p.indexed_at or 'not yet'}")


@project_app.command("set")
def project_set(
    project: str,
    verify: Annotated[
        list[str] | None, typer.Option("--verify", help="Verify command (repeatable).")
    ] = None,
    clear_verify: Annotated[
        bool, typer.Option(help="Forget the override; use .errands.toml or detection.")
    ] = False,
    setup: Annotated[
        list[str] | None,
        typer.Option("--setup", help="Setup command, e.g. a dependency install (repeatable)."),
    ] = None,
    clear_setup: Annotated[bool, typer.Option(help="Forget the setup override.")] = False,
    setup_network: Annotated[
        bool | None,
        typer.Option("--setup-network/--no-setup-network", help="Let setup reach the network."),
    ] = None,
    setup_host: Annotated[
        list[str] | None,
        typer.Option(
            "--setup-host",
            help="host:port setup commands may reach through the egress proxy (repeatable; "
            "replaces .errands.toml's list and the defaults).",
        ),
    ] = None,
    clear_setup_hosts: Annotated[
        bool, typer.Option(help="Forget the hosts override; use .errands.toml or the defaults.")
    ] = False,
    sandbox: Annotated[str | None, typer.Option(help="auto, bubblewrap or none.")] = None,
    auto_execute: Annotated[bool | None, typer.Option("--auto-execute/--no-auto-execute")] = None,
    base_branch: Annotated[str | None, typer.Option()] = None,
    max_jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs of this project running at once, across all workers."),
    ] = None,
    clear_max_jobs: Annotated[bool, typer.Option(help="Use ERRANDS_PROJECT_MAX_JOBS.")] = False,
    lean_after: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Answer questions asked during execution with the agent's leaning after "
            "this many hours.",
        ),
    ] = None,
    clear_lean_after: Annotated[
        bool, typer.Option(help="Wait for people however long it takes (the default).")
    ] = False,
    research_model: Annotated[
        str | None, typer.Option(help='provider:name for research ("" = the server\'s).')
    ] = None,
    execute_model: Annotated[
        str | None, typer.Option(help='provider:name for plan/execute/revise ("" = the server\'s).')
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(help='What types the code: native, claude-code, codex ("" = .errands.toml).'),
    ] = None,
    revise_executor: Annotated[
        str | None, typer.Option(help='The executor of revise rounds ("" = as --executor).')
    ] = None,
    required_approvals: Annotated[
        int | None, typer.Option(help="Reviewers who must approve the same head to merge.")
    ] = None,
    stacked_pulls: Annotated[
        bool | None,
        typer.Option(
            "--stacked-pulls/--single-pull",
            help="GitHub projects: one pull request per subtask, as a GitHub stack.",
        ),
    ] = None,
) -> None:
    """Change a project's settings (they override .errands.toml and detection)."""
    from errands.workflow import actions

    _run(
        lambda s, _: actions.update_project(
            s,
            project,
            verify_commands=verify,
            clear_verify_commands=clear_verify,
            setup_commands=setup,
            clear_setup_commands=clear_setup,
            setup_network=setup_network,
            setup_hosts=setup_host,
            clear_setup_hosts=clear_setup_hosts,
            sandbox_backend=sandbox,
            auto_execute=auto_execute,
            base_branch=base_branch,
            max_concurrent_jobs=max_jobs,
            clear_max_concurrent_jobs=clear_max_jobs,
            lean_after_hours=lean_after,
            clear_lean_after_hours=clear_lean_after,
            research_model=research_model,
            execute_model=execute_model,
            executor=executor,
            revise_executor=revise_executor,
            required_approvals=required_approvals,
            stacked_pulls=stacked_pulls,
        )
    )
    out.print("Updated.")


@project_app.command("index")
def project_index(project: str) -> None:
    """Queue a re-index of a project."""
    from errands.workflow import actions

    _run(lambda s, settings: actions.reindex_project(s, settings, project))
    out.print("Indexing queued.")


# -- code index -------------------------------------------------------------------------------


@app.command("index")
def index_command(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
) -> None:
    """Index a project now (languages, verify commands, symbols, search), with progress.
    Only files changed since the last index are re-read."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from errands.store import events as event_log
    from errands.workflow import actions
    from errands.workflow.index import index_project

    with _db() as (settings, db):
        with db.session() as s:
            project_id = actions.get_project(s, project).id

        def emit(kind: str, message: str, data: dict[str, Any]) -> None:
            with db.session() as s:
                event_log.record(s, kind, message, project_id=project_id, data=data)
            if kind == "index.finished":
                out.print(message)

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            job = bar.add_task("Indexing", total=None)
            index_project(
                settings,
                db,
                project_id,
                emit=emit,
                progress=lambda done, total: bar.update(job, completed=done, total=total),
            )


@app.command()
def locate(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    text: Annotated[str, typer.Argument(help="A task, an issue, a traceback; - = stdin.")],
    limit: Annotated[int, typer.Option(help="How many files.")] = 10,
    as_json: JsonOpt = False,
    use_remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="Ask the server `errands login` stored a token for (its index, held open).",
        ),
    ] = False,
) -> None:
    """Where would this change go? Rank files and symbols, with reasons (no LLM)."""
    from errands.store_location import store_location

    query = sys.stdin.read() if text == "-" else text
    # Without Settings (pydantic) when the store's place is plain to see: a fresh process
    # then spends its time on the index, not on importing.
    location = store_location()
    if location is None:
        settings = _settings()
        location = settings.home, settings.resolved_database_url
    home, url = location
    if use_remote:
        found = _locate_remote(home, project, query, limit)
    else:
        found = _locate_here(home, url, project, query, limit)
    if as_json:
        _print_json(found)
        return
    table = Table("#", "file", "score", "why", "symbols")
    for n, hit in enumerate(found, start=1):
        symbols = ", ".join(f"{s['name']}:{s['line']}" for s in hit["symbols"][:4])
        table.add_row(
            str(n), hit["path"], f"{hit['score']:.2f}", "; ".join(hit["reasons"]), symbols
        )
    out.print(table)


def _locate_here(home: Path, url: str, project: str, query: str, limit: int) -> list[Any]:
    """From the project's index on this machine, read by this process."""
    from errands.workflow.code_index import locate_once, quick_project_id

    project_id = quick_project_id(url, project)
    if project_id is None:  # not SQLite, or no such project: the store says which
        from errands.workflow import actions

        project_id = _run(lambda s, st: actions.get_project(s, project).id)
    located = locate_once(home, project_id, query, limit=limit)
    if located is None:
        raise InvalidInput(
            f"Project {project!r} has no code index yet: run `errands index {project}`."
        )
    return [hit.to_json() for hit in located]


def _locate_remote(home: Path, project: str, query: str, limit: int) -> list[Any]:
    """From the remote server's index, which it holds open: this process imports no index
    code (nor numpy), nor an HTTP client beyond the standard library's."""
    from errands.accounts import remote

    return remote.locate(remote.load_from(home), project, query, limit)


# -- tasks ------------------------------------------------------------------------------------


@task_app.command("add")
def task_add(
    project: Annotated[str, typer.Option("--project", "-p", help="Project id or name.")],
    title: Annotated[
        str | None, typer.Argument(help="Title (else: first line of the file).")
    ] = None,
    body: Annotated[str | None, typer.Option(help="Task body text.")] = None,
    file: Annotated[
        Path | None, typer.Option(help="Read the body (or title + body) from a file; - = stdin.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand off a task: title and body from arguments, a file, or your $EDITOR."""
    from errands.workflow import actions

    _settings().require_llm()  # before the editor opens, so no text is written in vain
    text: str | None = body
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else _read_text(file)
    elif body is None and title is None:
        text = click.edit(TASK_TEMPLATE)
        if text is None or text.strip() == TASK_TEMPLATE.strip():
            raise InvalidInput("Aborted: the task text was left unchanged.")
    text = text or ""
    if title is None:
        first, _, rest = text.strip().partition("\n")
        title, text = first.lstrip("# ").strip(), rest.strip()
    task = _run(
        lambda s, settings: _task_public(
            s, actions.create_task(s, settings, project, title or "", text).id
        )
    )
    if as_json:
        _print_json(task)
    else:
        out.print(f"Task [bold]{task.id}[/] created: {task.title} — research queued.")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text.") from exc


@task_app.command("list")
def task_list(
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tasks, newest first."""
    from errands.schemas import TaskSummary
    from errands.workflow import actions

    tasks = _run(
        lambda s, _: [
            TaskSummary.model_validate(t)
            for t in actions.list_tasks(s, project=project, state=state)
        ]
    )
    if as_json:
        _print_json(tasks)
        return
    table = Table("id", "project", "state", "title", "updated")
    for t in tasks:
        table.add_row(
            str(t.id), str(t.project_id), t.state, t.title, f"{t.updated_at:%Y-%m-%d %H:%M}"
        )
    out.print(table)


@task_app.command("show")
def task_show(task_id: TaskArg, as_json: JsonOpt = False) -> None:
    """Show a task: research, questions, subtasks, review, hand-off, usage."""
    from rich.markdown import Markdown

    t = _run(lambda s, _: _task_public(s, task_id))
    if as_json:
        _print_json(t)
        return
    out.print(f"[bold]#{t.id} {t.title}[/]  [cyan]{t.state}[/]  branch: {t.branch or '-'}")
    if t.failure_reason:
        out.print(f"[red]Failed:[/] {t.failure_reason}")
    if t.merge_error:
        out.print(f"[red]Merge problem:[/] {t.merge_error}")
    if t.research:
        out.print(f"\n[bold]Overview[/]\n{t.research.get('overview', '')}")
    if t.requirements:
        out.print("\n[bold]Requirements[/]")
        for r in t.requirements:
            out.print(f"  • {r}")
    for q in t.questions:
        out.print(f"\n[bold]Q{q.position}.[/] {q.text}\n  [dim]{q.reasoning}[/]")
        for n, option in enumerate(q.options, start=1):
            mark = " (recommended)" if n == q.recommended else ""
            chosen = " [green]← answer[/]" if n == q.answer_option else ""
            out.print(f"  {n}. {option['label']}: {option['requirement']}{mark}{chosen}")
        if q.answer_text:
            out.print(f"  answer: {q.answer_text}")
    if t.subtasks:
        out.print("\n[bold]Subtasks[/]")
        for st in t.subtasks:
            verdict = {True: "verified", False: "verification failed", None: "not verified"}
            sha = st.commit_sha[:10] if st.commit_sha else "-"
            out.print(f"  {st.position}. [{st.state}] {st.title} {sha} ({verdict[st.verified]})")
            if st.no_change_reason:
                out.print(f"     no change: {st.no_change_reason}", highlight=False, markup=False)
            if st.progress:
                out.print(f"     progress: {st.progress}", highlight=False, markup=False)
        if t.no_change:
            out.print(
                "[yellow]Nothing to merge:[/] no subtask changed anything, so approve is "
                f"refused. If nothing needs to change, `errands cancel {t.id}`."
            )
    for c in t.comments:
        state = "resolved" if c.resolved else "open"
        # People's text: printed as it is, never read as Rich markup.
        out.print(
            f"  💬 #{c.id} {c.path}:{c.line} [{c.kind}, {state}] {c.body}",
            highlight=False,
            markup=False,
        )
        if c.route:
            went = c.route
            where = f"fix in subtask {went.subtask}" if went.kind == "fix" else "new subtask"
            if went.kind == "new" and went.subtask:
                where += f" {went.subtask}"
            by = " (by where it was left)" if went.by == "where-left" else ""
            out.print(f"     → {where}: {went.reason}{by}", highlight=False, markup=False)
    u = t.usage
    out.print(
        f"\nUsage: {u.model_requests} model requests, {u.input_tokens} input / "
        f"{u.output_tokens} output tokens"
    )
    if t.handoff and t.state in (TaskState.IN_REVIEW, TaskState.MERGED):
        out.print(Markdown(t.handoff))


# -- evaluation -------------------------------------------------------------------------------


@eval_app.command("run")
def eval_run(
    dataset: Annotated[
        Path, typer.Argument(help="SWE-bench-style instances: a JSONL or Parquet file.")
    ],
    executor: Annotated[
        str,
        typer.Option(help="Who types each subtask: native, or another registered executor."),
    ] = "native",
    model: Annotated[
        str | None, typer.Option(help="provider:name for every phase (else ERRANDS_MODEL).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N instances.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Instances run at once.")] = 1,
    budget: Annotated[
        float | None,
        typer.Option(min=0, help="US dollars the run may spend; no model call starts past it."),
    ] = None,
    price: Annotated[
        tuple[float, float] | None,
        typer.Option(help="The model's price, $ per million input and output tokens."),
    ] = None,
    environments: Annotated[
        Path | None,
        typer.Option(help="TOML (or JSON) with setup and test commands per repository."),
    ] = None,
    repos: Annotated[
        Path | None,
        typer.Option(help="Directory of local clones (owner__name, owner/name or name)."),
    ] = None,
    repo_url: Annotated[
        str, typer.Option(help="Where to clone a repository missing from --repos.")
    ] = "https://github.com/{repo}.git",
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds an instance may take to reach review.")
    ] = 3600.0,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Results directory (default errands-eval/DATASET-EXECUTOR-MODEL)."
        ),
    ] = None,
) -> None:
    """Run each instance through the real workflow and score it with its hidden tests.
    Resumable: instances already in the results are skipped."""
    from errands.evaluation import harness
    from errands.evaluation.results import RESULTS_FILE, SUMMARY_FILE, InstanceResult
    from errands.evaluation.summary import REASON_WORDS, money

    target = out_dir or harness.default_out(dataset, executor, model)

    def finished(r: InstanceResult) -> None:
        mark = "[green]resolved[/]" if r.resolved else f"[red]{REASON_WORDS[r.reason]}[/]"
        why = f": {r.detail[:200]}" if r.detail and not r.resolved else ""
        out.print(
            f"{r.instance_id}: {mark}{why} ({r.wall_seconds:.1f} s, {money(r.usage.cost_usd)})",
            highlight=False,
        )

    options = harness.RunOptions(
        dataset=dataset,
        out=target,
        executor=executor,
        model=model,
        limit=limit,
        jobs=jobs,
        budget_usd=budget,
        price=price,
        environments=environments,
        mirrors=repos,
        url_template=repo_url,
        timeout=timeout,
    )
    try:
        report = harness.run(options, finished)
    except KeyboardInterrupt:
        err.print(
            f"Interrupted. Finished instances are kept in {target / RESULTS_FILE}; run the "
            "same command to go on.",
            highlight=False,
        )
        sys.exit(130)
    resolved = sum(r.resolved for r in report.results)
    out.print(
        f"{report.ran} instance(s) run, {report.skipped} already done; "
        f"{resolved} of {len(report.results)} resolved."
    )
    if report.stopped_by_budget:
        out.print(f"[yellow]Budget reached:[/] {report.not_run} instance(s) not run.")
    out.print(
        f"Results: {target / RESULTS_FILE}; summary: {target / SUMMARY_FILE}", highlight=False
    )


@eval_app.command("compare")
def eval_compare(
    a: Annotated[Path, typer.Argument(help="A results directory or results.jsonl.")],
    b: Annotated[Path, typer.Argument(help="Another one.")],
) -> None:
    """Two runs side by side: a table per executor (Markdown)."""
    from errands.evaluation.compare import compare

    sys.stdout.write(compare(a, b))


# -- a remote server ----------------------------------------------------------------------


@app.command()
def login(
    url: Annotated[
        str, typer.Argument(help="The Errands server, e.g. https://errands.example.com")
    ],
    token: Annotated[
        str | None, typer.Option(help="An API token (created on the server's account page).")
    ] = None,
) -> None:
    """Keep a remote server's address and an API token (in $ERRANDS_HOME/remote.toml)."""
    from errands.accounts import remote

    secret = token or typer.prompt("API token", hide_input=True)
    me = remote.login(_settings(), url, secret)
    org = me.get("org") or {}
    typer.echo(f"Logged in to {url} as {me.get('email')} ({org.get('name')}, {org.get('role')}).")


@app.command()
def whoami(as_json: JsonOpt = False) -> None:
    """Who the stored token acts as on the remote server."""
    from errands.accounts import remote

    settings = _settings()
    me = remote.call(remote.load(settings), "GET", "/api/me")
    if as_json:
        _print_json(me)
        return
    org = me.get("org") or {}
    typer.echo(
        f"{me.get('email')} — {org.get('name')} ({org.get('role')}) on {remote.load(settings).url}"
    )


@app.command("mcp")
def mcp_command(
    use_remote: Annotated[
        bool,
        typer.Option(
            "--remote", help="Work against the server `errands login` stored a token for."
        ),
    ] = False,
) -> None:
    """Serve Errands as an MCP server over stdio (for Claude Code, Cursor, any MCP client):
    create_task, list_tasks, show_task, answer_questions, review_state, locate."""
    try:
        from errands import mcp_server
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("mcp"):
            raise
        raise ConfigError(
            "errands mcp needs the MCP SDK: pip install -e '.[mcp]' (or pip install mcp)."
        ) from exc
    mcp_server.serve(_settings(), remote=use_remote)


@app.command()
def logout() -> None:
    """Forget the remote server's token."""
    from errands.accounts import remote

    typer.echo("Logged out." if remote.forget(_settings()) else "Not logged in.")


@app.command()
def answer(
    task_id: TaskArg,
    question: Annotated[int, typer.Argument(help="Question number.")],
    option: Annotated[int | None, typer.Argument(help="Option number.")] = None,
    text: Annotated[
        str | None, typer.Option(help="A written answer (with or without an option).")
    ] = None,
) -> None:
    """Answer a clarifying question by option number and/or text."""
    from errands.workflow import actions

    state = _run(
        lambda s, settings: (
            actions.answer(s, settings, task_id, question, option=option, text=text).state
        )
    )
    out.print(f"Answered. Task {task_id} is {state}.")


@app.command()
def execute(task_id: TaskArg) -> None:
    """Start execution of a ready task (when its project does not auto-execute)."""
    from errands.workflow import actions

    _run(lambda s, settings: actions.execute(s, settings, task_id))
    out.print("Execution queued.")


@app.command()
def retry(task_id: TaskArg) -> None:
    """Retry the stage a failed task failed in."""
    from errands.workflow import actions

    state = _run(lambda s, settings: actions.retry(s, settings, task_id).state)
    out.print(f"Retrying; task {task_id} is {state}.")


@app.command()
def cancel(task_id: TaskArg) -> None:
    """Cancel a task; a running job stops its agent and commands."""
    from errands.workflow import actions

    _run(lambda s, _: actions.cancel(s, task_id))
    out.print(f"Task {task_id} cancelled.")


# -- review -----------------------------------------------------------------------------------


@app.command()
def diff(
    task_id: TaskArg,
    subtask: Annotated[int | None, typer.Option(help="Only this subtask's commit.")] = None,
    stat: Annotated[bool, typer.Option(help="Only the list of files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the task's changes: the whole branch or one subtask's commit."""
    from errands.workflow import actions

    changes: Diff = _run(lambda s, settings: actions.diff(s, settings, task_id, subtask)[1])
    if as_json:
        _print_json(changes.to_dict())
        return
    for f in changes.files:
        label = f"{f.old_path} → {f.path}" if f.old_path and f.old_path != f.path else f.path
        out.print(
            f"[bold]{f.status:>8}[/] {label}  [green]+{f.additions}[/] [red]-{f.deletions}[/]"
        )
        if stat:
            continue
        if f.is_binary:
            out.print("         [dim](binary file)[/]")
        for hunk in f.hunks:
            out.print(f"[cyan]{hunk.header}[/]", highlight=False)
            for line in hunk.lines:
                style = {"added": "green", "removed": "red", "context": ""}[line.kind]
                sign = {"added": "+", "removed": "-", "context": " "}[line.kind]
                out.print(f"{sign}{line.text}", style=style, highlight=False, markup=False)
        if f.truncated:
            out.print("         [yellow](diff truncated: file too large to show whole)[/]")


@app.command()
def comment(
    task_id: TaskArg,
    location: Annotated[str, typer.Argument(help="PATH:LINE or PATH:START-END.")],
    body: Annotated[str, typer.Argument(help="The comment.")],
    suggestion: Annotated[bool, typer.Option(help="A suggestion, not blocking.")] = False,
    side: Annotated[str, typer.Option(help="new (added/context line) or old (removed).")] = "new",
    subtask: Annotated[int | None, typer.Option(help="The subtask whose diff you read.")] = None,
    reply_to: Annotated[int | None, typer.Option(help="Reply in this comment's thread.")] = None,
) -> None:
    """Comment on a line (blocking by default)."""
    from errands.workflow import actions

    path, line, end = _parse_location(location)
    c = _run(
        lambda s, settings: (
            actions.add_comment(
                s,
                settings,
                task_id,
                path=path,
                line=line,
                end_line=end,
                body=body,
                kind="suggestion" if suggestion else "blocking",
                side=side,
                subtask=subtask,
                parent_id=reply_to,
            ).id
        )
    )
    out.print(f"Comment {c} added.")


def _parse_location(location: str) -> tuple[str, int, int | None]:
    path, sep, lines = location.rpartition(":")
    start, _, end = lines.partition("-")
    if not sep or not path or not start.isdigit() or (end and not end.isdigit()):
        raise InvalidInput(f"Location {location!r} is not PATH:LINE or PATH:START-END.")
    return path, int(start), int(end) if end else None


@app.command()
def resolve(
    task_id: TaskArg,
    comment_id: int,
    reopen: Annotated[bool, typer.Option(help="Reopen instead.")] = False,
) -> None:
    """Resolve (or reopen) a review comment thread."""
    from errands.workflow import actions

    _run(
        lambda s, settings: actions.resolve_comment(
            s, task_id, comment_id, not reopen, settings=settings
        )
    )
    out.print("Reopened." if reopen else "Resolved.")


@app.command("edit-comment")
def edit_comment(task_id: TaskArg, comment_id: int, body: str) -> None:
    """Change a review comment's text (one on the pull request is edited there too)."""
    from errands.workflow import actions

    _run(lambda s, settings: actions.edit_comment(s, settings, task_id, comment_id, body))
    out.print("Edited.")


@app.command("delete-comment")
def delete_comment(task_id: TaskArg, comment_id: int) -> None:
    """Delete a review comment and its replies (on the pull request too)."""
    from errands.workflow import actions

    _run(lambda s, settings: actions.delete_comment(s, settings, task_id, comment_id))
    out.print("Deleted.")


@app.command("request-changes")
def request_changes(task_id: TaskArg) -> None:
    """Send the open comments back: a revise job fixes each inside the subtask it belongs to
    (restacking the branch) or makes new work a new subtask, and says which and why."""
    from errands.workflow import actions

    _run(lambda s, settings: actions.request_changes(s, settings, task_id))
    out.print("Revision queued.")


@app.command()
def approve(task_id: TaskArg) -> None:
    """Approve: squash-merge the branch into the base branch."""
    from errands.workflow import actions

    _run(lambda s, settings: actions.approve(s, settings, task_id))
    out.print("Approved; merge queued.")


@app.command()
def logs(
    task_id: TaskArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    after: Annotated[int, typer.Option(help="Only events after this id.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Print the task's whole event log; --follow until it is merged, cancelled or failed."""
    from errands.schemas import EventPublic
    from errands.store import events as event_log
    from errands.workflow import actions

    with _db() as (_, db):
        cursor = after
        while True:
            with db.session() as s:
                state = actions.get_task(s, task_id).state
                found = [
                    EventPublic.model_validate(e)
                    for e in event_log.list_events(s, task_id=task_id, after=cursor)
                ]
            for e in found:
                cursor = e.id
                if as_json:
                    sys.stdout.write(e.model_dump_json() + "\n")
                else:
                    out.print(
                        f"[dim]{e.created_at:%H:%M:%S}[/] [cyan]{e.kind:<18}[/] {e.message}",
                        highlight=False,
                    )
            sys.stdout.flush()
            if found:
                continue  # a page at a time (the store answers at most 1,000): on to the next
            if not follow or state in RESTING:
                return
            time.sleep(0.5)


def main() -> None:
    try:
        app()
    except ErrandsError as exc:
        err.print(f"[red]Error:[/] {exc.message}", highlight=False)
        sys.exit(1)
    except Exception as exc:  # a bug: say so plainly instead of a stack trace
        logging.getLogger("errands").debug("internal error", exc_info=True)
        err.print(f"[red]Internal error:[/] {type(exc).__name__}: {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
