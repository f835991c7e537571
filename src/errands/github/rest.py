"""The few REST operations Errands uses, on one repository. Shapes follow GitHub's
OpenAPI description; answers are returned as the JSON dicts GitHub sends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from errands.github.client import GitHubClient
from errands.github.errors import GitHubError, PullNotMergeable

Json = dict[str, Any]
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})

REVIEW_THREADS = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $after) {
        nodes { id isResolved comments(first: 1) { nodes { databaseId } } }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""
RESOLVE_THREAD = """
mutation($threadId: ID!) {
  resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } }
}
"""
UNRESOLVE_THREAD = """
mutation($threadId: ID!) {
  unresolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } }
}
"""


class RepoAPI:
    def __init__(self, client: GitHubClient, full_name: str) -> None:
        self.client = client
        self.full_name = full_name
        self.owner, _, self.name = full_name.partition("/")
        self._permissions: dict[str, str] = {}

    @property
    def _base(self) -> str:
        return f"/repos/{self.full_name}"

    def repository(self) -> Json:
        data: Json = self.client.json("GET", self._base)
        return data

    # -- issues ---------------------------------------------------------------------------

    def open_issues(self) -> Iterator[Json]:
        """Open issues, oldest first; pull requests (which the issues API lists too) skipped."""
        for item in self.client.paginate(
            f"{self._base}/issues", {"state": "open", "sort": "created", "direction": "asc"}
        ):
            if "pull_request" not in item:
                yield item

    def issue(self, number: int) -> Json:
        data: Json = self.client.json("GET", f"{self._base}/issues/{number}")
        return data

    def issue_comments(self, number: int) -> Iterator[Json]:
        yield from self.client.paginate(f"{self._base}/issues/{number}/comments")

    def comment_on_issue(self, number: int, body: str) -> Json:
        data: Json = self.client.json(
            "POST", f"{self._base}/issues/{number}/comments", json={"body": body}
        )
        return data

    def edit_issue_comment(self, comment_id: int, body: str) -> Json:
        data: Json = self.client.json(
            "PATCH", f"{self._base}/issues/comments/{comment_id}", json={"body": body}
        )
        return data

    def permission(self, login: str) -> str:
        """``admin``, ``maintain``, ``write``, ``triage``, ``read`` or ``none`` (cached per
        instance: one sync pass asks once per person)."""
        if login not in self._permissions:
            response = self.client.request(
                "GET", f"{self._base}/collaborators/{login}/permission", allow=(404,)
            )
            if response.status_code == 404:
                self._permissions[login] = "none"
            else:
                body = response.json()
                # role_name distinguishes maintain/triage, which `permission` folds away.
                role = str(body.get("role_name") or body.get("permission") or "none")
                self._permissions[login] = role
        return self._permissions[login]

    def can_write(self, login: str) -> bool:
        return self.permission(login) in WRITE_PERMISSIONS

    # -- pull requests --------------------------------------------------------------------

    def pull_for_branch(self, branch: str) -> Json | None:
        """The newest pull request (any state) from ``branch`` of this repository."""
        pulls = self.client.json(
            "GET",
            f"{self._base}/pulls",
            params={"head": f"{self.owner}:{branch}", "state": "all", "per_page": 10},
        )
        if not isinstance(pulls, list) or not pulls:
            return None
        newest: Json = max(pulls, key=lambda p: int(p["number"]))
        return newest

    def create_pull(self, *, title: str, body: str, head: str, base: str) -> Json:
        data: Json = self.client.json(
            "POST",
            f"{self._base}/pulls",
            json={"title": title, "body": body, "head": head, "base": base},
        )
        return data

    def update_pull(self, number: int, **fields: Any) -> Json:
        data: Json = self.client.json("PATCH", f"{self._base}/pulls/{number}", json=fields)
        return data

    def pull(self, number: int) -> Json:
        data: Json = self.client.json("GET", f"{self._base}/pulls/{number}")
        return data

    def review_comments(self, number: int) -> Iterator[Json]:
        yield from self.client.paginate(f"{self._base}/pulls/{number}/comments")

    def create_review_comment(
        self,
        number: int,
        *,
        body: str,
        commit_id: str,
        path: str,
        line: int,
        side: str,
        start_line: int | None = None,
    ) -> Json:
        payload: Json = {
            "body": body,
            "commit_id": commit_id,
            "path": path,
            "line": line,
            "side": side,
        }
        if start_line is not None and start_line < line:
            payload |= {"start_line": start_line, "start_side": side}
        data: Json = self.client.json("POST", f"{self._base}/pulls/{number}/comments", json=payload)
        return data

    def reply_to_review_comment(self, number: int, comment_id: int, body: str) -> Json:
        data: Json = self.client.json(
            "POST",
            f"{self._base}/pulls/{number}/comments/{comment_id}/replies",
            json={"body": body},
        )
        return data

    # -- review sync (edits, deletions, thread resolutions, verdicts) ----------------------

    def review_comment(self, comment_id: int) -> Json | None:
        """A review comment as GitHub has it now; None when it is gone."""
        response = self.client.request(
            "GET", f"{self._base}/pulls/comments/{comment_id}", allow=(404,)
        )
        if response.status_code == 404:
            return None
        data: Json = response.json()
        return data

    def edit_review_comment(self, comment_id: int, body: str) -> Json | None:
        """The comment as edited; None when it is gone from GitHub."""
        response = self.client.request(
            "PATCH",
            f"{self._base}/pulls/comments/{comment_id}",
            json={"body": body},
            allow=(404,),
        )
        if response.status_code == 404:
            return None
        data: Json = response.json()
        return data

    def delete_review_comment(self, comment_id: int) -> bool:
        """Delete a review comment; False when it was gone already."""
        response = self.client.request(
            "DELETE", f"{self._base}/pulls/comments/{comment_id}", allow=(404,)
        )
        return response.status_code != 404

    def review_threads(self, number: int) -> dict[int, tuple[str, bool]]:
        """The pull request's review threads: the REST id of each thread's first comment ->
        (the thread's GraphQL id, whether it is resolved). REST has no threads."""
        found: dict[int, tuple[str, bool]] = {}
        after: str | None = None
        while True:
            data = self.client.graphql(
                REVIEW_THREADS,
                {"owner": self.owner, "name": self.name, "number": number, "after": after},
            )
            threads = data["repository"]["pullRequest"]["reviewThreads"]
            for node in threads["nodes"]:
                first = node["comments"]["nodes"]
                if first and first[0].get("databaseId") is not None:
                    found[int(first[0]["databaseId"])] = (str(node["id"]), bool(node["isResolved"]))
            page = threads["pageInfo"]
            if not page["hasNextPage"]:
                return found
            after = str(page["endCursor"])

    def resolve_thread(self, thread_id: str, resolved: bool) -> bool:
        """Resolve (or unresolve) a review thread; whether it now is resolved."""
        mutation = RESOLVE_THREAD if resolved else UNRESOLVE_THREAD
        data = self.client.graphql(mutation, {"threadId": thread_id})
        key = "resolveReviewThread" if resolved else "unresolveReviewThread"
        return bool(data[key]["thread"]["isResolved"])

    def reviews(self, number: int) -> Iterator[Json]:
        yield from self.client.paginate(f"{self._base}/pulls/{number}/reviews")

    def create_review(self, number: int, *, body: str, event: str, commit_id: str) -> Json:
        data: Json = self.client.json(
            "POST",
            f"{self._base}/pulls/{number}/reviews",
            json={"body": body, "event": event, "commit_id": commit_id},
        )
        return data

    def squash_merge(self, number: int, *, sha: str, title: str, message: str) -> str:
        """Squash-merge the pull request if its head is still ``sha``; the merge commit."""
        response = self.client.request(
            "PUT",
            f"{self._base}/pulls/{number}/merge",
            json={
                "merge_method": "squash",
                "sha": sha,
                "commit_title": title,
                "commit_message": message,
            },
            allow=(405, 409),
        )
        if response.status_code in (405, 409):
            reason = str(response.json().get("message", "not mergeable"))
            raise PullNotMergeable(
                f"GitHub refused to merge pull request #{number}: {reason}", files=[]
            )
        body = response.json()
        if not body.get("merged"):
            raise GitHubError(f"GitHub did not merge pull request #{number}: {body}")
        return str(body["sha"])
