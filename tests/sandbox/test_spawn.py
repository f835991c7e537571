"""Long-running sandboxed processes (ACP agents, MCP servers): stdio pipes, the sandbox's
confinement, and nothing of the tree left once stopped."""

from __future__ import annotations

import asyncio

from errands.sandbox.spawn import spawn
from tests.sandbox.conftest import Host, requires_bwrap, survivors

pytestmark = requires_bwrap


def test_a_spawned_process_talks_over_stdio_and_dies_with_its_tree(host: Host, marker: str) -> None:
    async def go() -> tuple[bytes, str]:
        process = await spawn(
            host.sandbox().launch(
                f"(sleep {marker} &); id -u >&2; exec cat {host.home}/.ssh/id_rsa -"
            )
        )
        process.stdin.write(b"ping\n")
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        await asyncio.sleep(0.2)
        assert survivors(marker, wait=0)  # the detached sleep runs, until stop
        await process.stop(grace=0.5)
        return line, process.stderr_tail

    line, stderr = asyncio.run(go())

    assert line == b"ping\n"
    assert stderr.splitlines()[0] == "1000"
    assert "No such file" in stderr  # the host's SSH key is not there
    assert survivors(marker) == []
