"""The fake GitHub's stacked pull requests, as GitHub documents them (public preview, REST
API version 2022-11-28; docs.github.com/en/rest/pulls/stacks and "Merge a pull request
asynchronously"):

- ``POST /repos/{o}/{r}/stacks {"pull_requests": [bottom, …, top]}`` links open pull
  requests into a stack; each one's base must be the head branch of the one below it (422
  otherwise, or when one is in a stack already). ``GET /stacks?pull_request=N``,
  ``GET /stacks/{n}`` and ``POST /stacks/{n}/add`` read and extend it.
- A stacked pull request carries ``stack: {id, number, size, position, base: {ref, sha}}``
  (position 1 is the bottom); a PATCH naming ``base`` is refused; the synchronous merge
  endpoint refuses it (405).
- ``PUT /pulls/{n}/merge-async {merge_method, sha, commit_title, commit_message}`` answers
  ``202 {status: "pending", details: {uuid, …}}`` (``200`` ``merged``/``failed`` at once for a
  merged, closed or draft pull request); ``GET /pulls/{n}/merge-async/{uuid}`` polls it. The
  merge lands every pull request of the stack up to and including ``n`` onto the stack's
  base, bottom-up, atomically (here each squashed, when the first poll arrives); the ones
  above are retargeted onto the base.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from errands.testing.fake_github import FakeGitHub, FakeRepo

Json = dict[str, Any]


def _stack_of(repo: FakeRepo, number: int) -> Json | None:
    return next(
        (st for st in repo.stacks.values() if number in st["numbers"]),
        None,
    )


def stack_summary(repo: FakeRepo, number: int) -> Json | None:
    """The ``stack`` object of a stacked pull request's REST resource."""
    stack = _stack_of(repo, number)
    if stack is None:
        return None
    return {
        "id": stack["id"],
        "number": stack["number"],
        "size": len(stack["numbers"]),
        "position": stack["numbers"].index(number) + 1,
        "base": {"ref": stack["base"], "sha": None},
    }


def _invalid(message: str, status: int = 422) -> Response:
    return JSONResponse(
        {"message": message, "errors": [{"resource": "Stack", "code": "invalid"}]},
        status_code=status,
    )


def stack_routes(fake: FakeGitHub, app: FastAPI) -> None:
    def stack_json(repo: FakeRepo, stack: Json) -> Json:
        entries = []
        for number in stack["numbers"]:
            pull = fake._pull_json(repo, repo.pulls[number])
            entries.append(
                {
                    "number": number,
                    "state": pull["state"],
                    "draft": pull["draft"],
                    "merged_at": pull["merged_at"],
                    "head": {"ref": pull["head"]["ref"], "sha": pull["head"]["sha"]},
                }
            )
        return {
            "id": stack["id"],
            "number": stack["number"],
            "node_id": f"PRS_{stack['id']}",
            "url": f"{fake.base_url}/repos/{repo.full_name}/stacks/{stack['number']}",
            "base": {"ref": stack["base"]},
            "open": any(e["merged_at"] is None for e in entries),
            "created_at": stack["created_at"],
            "pull_requests": entries,
        }

    def chain_error(repo: FakeRepo, numbers: list[int], below: int | None) -> str | None:
        """Why ``numbers`` (on top of ``below``) cannot form a stack, or None."""
        previous = repo.pulls[below]["head"]["ref"] if below is not None else None
        for number in numbers:
            pull = repo.pulls.get(number)
            if pull is None or pull["state"] != "open":
                return f"Pull request #{number} is not an open pull request."
            if _stack_of(repo, number) is not None:
                return f"Pull request #{number} is already in a stack."
            if previous is not None and pull["base"]["ref"] != previous:
                return (
                    f"Pull request #{number}'s base {pull['base']['ref']} is not the head "
                    f"branch {previous} of the pull request below it."
                )
            previous = pull["head"]["ref"]
        return None

    @app.get("/repos/{owner}/{name}/stacks")
    def list_stacks(owner: str, name: str, request: Request) -> Response:
        repo = fake.repos[f"{owner}/{name}"]
        wanted = request.query_params.get("pull_request")
        with fake._lock:
            found = [
                stack_json(repo, st)
                for _, st in sorted(repo.stacks.items())
                if wanted is None or int(wanted) in st["numbers"]
            ]
        return fake._page(request, found)

    @app.post("/repos/{owner}/{name}/stacks", status_code=201)
    async def create_stack(owner: str, name: str, request: Request) -> Response:
        body = await request.json()
        repo = fake.repos[f"{owner}/{name}"]
        numbers = body.get("pull_requests")
        if not isinstance(numbers, list) or not all(isinstance(n, int) for n in numbers):
            return _invalid("pull_requests must be a list of pull request numbers.")
        if len(numbers) < 2:
            return _invalid("A stack needs at least two pull requests.")
        with fake._lock:
            problem = chain_error(repo, numbers, None)
            if problem is not None:
                return _invalid(problem)
            number = len(repo.stacks) + 1
            stack = {
                "id": next(fake._ids),
                "number": number,
                "base": repo.pulls[numbers[0]]["base"]["ref"],
                "numbers": list(numbers),
                "created_at": "2026-12-06T00:00:00Z",
            }
            repo.stacks[number] = stack
            return JSONResponse(stack_json(repo, stack), status_code=201)

    @app.get("/repos/{owner}/{name}/stacks/{number}")
    def get_stack(owner: str, name: str, number: int) -> Response:
        repo = fake.repos[f"{owner}/{name}"]
        with fake._lock:
            stack = repo.stacks.get(number)
            if stack is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            return JSONResponse(stack_json(repo, stack))

    @app.post("/repos/{owner}/{name}/stacks/{number}/add")
    async def add_to_stack(owner: str, name: str, number: int, request: Request) -> Response:
        body = await request.json()
        repo = fake.repos[f"{owner}/{name}"]
        numbers = body.get("pull_requests")
        if not isinstance(numbers, list) or not numbers:
            return _invalid("pull_requests must be a list of pull request numbers.")
        with fake._lock:
            stack = repo.stacks.get(number)
            if stack is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            problem = chain_error(repo, numbers, stack["numbers"][-1])
            if problem is not None:
                return _invalid(problem)
            stack["numbers"].extend(numbers)
            return JSONResponse(stack_json(repo, stack))

    @app.put("/repos/{owner}/{name}/pulls/{number}/merge-async")
    async def merge_async(owner: str, name: str, number: int, request: Request) -> Response:
        body = await request.json()
        repo = fake.repos[f"{owner}/{name}"]
        with fake._lock:
            pull = repo.pulls.get(number)
            if pull is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            if pull["merged"]:
                return JSONResponse(
                    {
                        "status": "merged",
                        "details": {"message": "Already merged", "sha": pull["merge_commit_sha"]},
                    }
                )
            if pull["state"] != "open" or pull["draft"]:
                return JSONResponse(
                    {"status": "failed", "details": {"message": "Pull request is not open"}}
                )
            head = fake._head_sha(repo, pull["head"]["ref"])
            key = str(uuid.uuid4())
            request_json = {
                "number": number,
                "body": body,
                "status": "pending",
                "details": {
                    "message": "Merge request accepted",
                    "uuid": key,
                    "merge_method": body.get("merge_method", "default"),
                    "merge_action": body.get("merge_action", "default"),
                    "expected_head_sha": body.get("sha") or head,
                },
            }
            repo.merge_requests[key] = request_json
            return JSONResponse(
                {"status": "pending", "details": request_json["details"]}, status_code=202
            )

    @app.get("/repos/{owner}/{name}/pulls/{number}/merge-async/{key}")
    def merge_result(owner: str, name: str, number: int, key: str) -> Response:
        repo = fake.repos[f"{owner}/{name}"]
        with fake._lock:
            found = repo.merge_requests.get(key)
            if found is None or found["number"] != number:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            if found["status"] == "pending":  # the background merge runs now
                found["status"], found["details"] = _land(
                    fake, repo, number, found["details"]["expected_head_sha"], found["body"]
                )
            return JSONResponse({"status": found["status"], "details": found["details"]})


def _land(
    fake: FakeGitHub, repo: FakeRepo, number: int, expected: str, body: Json
) -> tuple[str, Json]:
    """Merge the stack up to ``number`` (or the lone pull request) onto its base, bottom-up,
    each squashed, atomically: all land or none does."""
    from errands.testing.fake_github import _git, _now_iso

    stack = _stack_of(repo, number)
    numbers = stack["numbers"] if stack else [number]
    upto = [n for n in numbers[: numbers.index(number) + 1] if not repo.pulls[n]["merged"]]
    if fake._head_sha(repo, repo.pulls[number]["head"]["ref"]) != expected:
        return "failed", {"message": "Head branch was modified. Review and try the merge again."}
    base_ref = stack["base"] if stack else repo.pulls[number]["base"]["ref"]
    start = fake._head_sha(repo, base_ref)
    if start is None:
        return "failed", {"message": "The base branch does not exist."}
    tip, landed = start, []
    for n in upto:
        pull = repo.pulls[n]
        head = fake._head_sha(repo, pull["head"]["ref"])
        if pull["state"] != "open" or head is None:
            return "failed", {"message": f"Pull request #{n} is not mergeable."}
        tree = _git(repo.git_dir, "merge-tree", "--write-tree", tip, head)
        if tree.returncode != 0:
            return "failed", {"message": f"Pull request #{n} conflicts with {base_ref}."}
        title = (
            body.get("commit_title")
            if n == number and body.get("commit_title")
            else f"{pull['title']} (#{n})"
        )
        message = f"{title}\n\n{body.get('commit_message') or ''}".rstrip() + "\n"
        tip = _git(
            repo.git_dir, "commit-tree", tree.stdout.split()[0], "-p", tip, "-m", message
        ).stdout.strip()
        landed.append((n, tip))
    moved = _git(repo.git_dir, "update-ref", f"refs/heads/{base_ref}", tip, start)
    if moved.returncode != 0:
        return "failed", {"message": "Base branch was modified."}
    for n, commit in landed:
        repo.pulls[n].update(
            state="closed",
            merged=True,
            merged_at=_now_iso(),
            merge_commit_sha=commit,
            closed_at=_now_iso(),
        )
    if stack:  # the pull requests above are retargeted onto the stack's base
        for n in stack["numbers"][stack["numbers"].index(number) + 1 :]:
            repo.pulls[n]["base"].update(ref=base_ref, label=f"{repo.full_name}:{base_ref}")
    return "merged", {"message": "Pull request successfully merged", "sha": tip}
