"""What the egress proxy adds to a model call.

A loopback stand-in for a provider answers Anthropic Messages with a fixed body (and a
streamed answer of N events); the same call is made N times straight to it and N times
through the proxy's Unix socket (as the sandbox's forwarder does), one connection kept
alive each way, with a meter that only counts. Prints the median and 95th percentile of
each, the difference per call, and for a stream the time to its first event and to its end,
with the machine's conditions (Python, CPUs, load average). ``--sandbox`` also times one
``curl`` inside bubblewrap through the forwarder against one with no network at all (the
forwarder's start-up is part of every sandboxed command that has egress). The same calls are
also made through the forwarder itself (run on the host, on a loopback port, as it runs in
the sandbox): the hop every sandboxed agent's model call takes. Before the forwarder set
TCP_NODELAY it added ~44 ms per call (the proxy's answer arrives in pieces, and each piece
waited for the client's delayed acknowledgement of the one before).

Usage (from the repository root)::

    python bench/egress_proxy.py [--calls 300] [--events 200] [--sandbox]

Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from errands.egress import EgressConfig, ModelCall, Refusal, Route, Usage, egress_proxy
from errands.egress import forwarder as forwarder_module
from errands.sandbox import BubblewrapSandbox, SandboxPolicy

BODY = json.dumps(
    {"id": "m", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 9, "output_tokens": 3}}
).encode()


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def check_before(self, call: ModelCall) -> None:
        return None

    def record(self, call: ModelCall, usage: Usage | None) -> None:
        self.calls += 1

    def refused(self, refusal: Refusal) -> None:
        return None


def provider(events: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # an answer leaves in one write (flushed after each request)

        def setup(self) -> None:
            super().setup()
            # Each event leaves at once, as a provider's edge sends them.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if not request.get("stream"):
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for n in range(events):
                data = {"type": "content_block_delta", "delta": {"text": f"t{n}"}}
                event = f"event: content_block_delta\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def timed(calls: int, call: Callable[[], object]) -> list[float]:
    call()  # the connection is open before timing starts
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def summary(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), statistics.quantiles(times, n=20)[18]


def stream_times(client: httpx.Client, url: str) -> tuple[float, float]:
    body = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
    started = time.perf_counter()
    first = 0.0
    with client.stream("POST", url, json=body) as answer:
        for line in answer.iter_lines():
            if line.startswith("data:") and not first:
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--sandbox", action="store_true")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    server = provider(args.events)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    body = {"model": "claude-sonnet-4-5", "messages": []}
    meter = Counter()
    route = Route("anthropic", base, "sk-bench-key")
    with egress_proxy(EgressConfig(routes=(route,)), meter) as proxy:
        direct = httpx.Client(base_url=base, timeout=30)
        proxied = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(proxy.socket)),
            base_url=f"{proxy.origin}/anthropic",
            timeout=30,
        )
        straight = timed(
            args.calls, lambda: direct.post("/v1/messages", json=body).raise_for_status()
        )
        through = timed(
            args.calls, lambda: proxied.post("/v1/messages", json=body).raise_for_status()
        )
        (d_med, d_p95), (p_med, p_95) = summary(straight), summary(through)
        print(f"{args.calls} calls (JSON answer, {len(BODY)} bytes), one kept-alive connection:")
        print(f"  straight to the provider : median {ms(d_med)}, p95 {ms(d_p95)}")
        print(f"  through the egress proxy : median {ms(p_med)}, p95 {ms(p_95)}")
        print(f"  added per call           : median {ms(p_med - d_med)}")
        with forwarder(proxy.socket) as port:
            relayed = httpx.Client(base_url=f"http://127.0.0.1:{port}/anthropic", timeout=30)
            hop = timed(
                args.calls, lambda: relayed.post("/v1/messages", json=body).raise_for_status()
            )
            relayed.close()
        r_med, r_95 = summary(hop)
        print(
            f"  through the sandbox's forwarder and the proxy: median {ms(r_med)}, p95 {ms(r_95)}"
        )
        print(f"  the forwarder's hop adds : median {ms(r_med - p_med)}")
        d_first, d_end = stream_times(direct, "/v1/messages")
        p_first, p_end = stream_times(proxied, "/v1/messages")
        print(f"a stream of {args.events} events:")
        print(f"  straight : first event {ms(d_first)}, end {ms(d_end)}")
        print(f"  proxied  : first event {ms(p_first)}, end {ms(p_end)}")
        print(f"metered calls: {meter.calls}")
        if args.sandbox:
            sandboxed(proxy.grant)
    server.shutdown()


@contextlib.contextmanager
def forwarder(socket_path: Path) -> Iterator[int]:
    """errands.egress.forwarder serving ``socket_path`` on a free loopback port; it forks and
    its parent exits, so the server is found again by its process group."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = Path(forwarder_module.__file__ or "")
    subprocess.run(
        [sys.executable, "-I", str(script), str(socket_path), str(port)],
        start_new_session=True,
        check=True,
    )
    try:
        yield port
    finally:
        group = _group_of(port)
        if group is not None:
            os.killpg(group, signal.SIGTERM)


def _group_of(port: int) -> int | None:
    """The process group of the forwarder serving ``port`` (its command line names it)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            len(argv) > 3
            and argv[2].endswith(b"forwarder.py")
            and argv[4:5] == [str(port).encode()]
        ):
            return os.getpgid(int(proc.name))
    return None


def sandboxed(grant: object) -> None:
    with tempfile.TemporaryDirectory() as workspace:
        env = {"PATH": "/usr/bin:/bin"}
        plain = BubblewrapSandbox(SandboxPolicy(workspace=Path(workspace), env=env))
        egress = BubblewrapSandbox(
            SandboxPolicy(workspace=Path(workspace), env=env, egress=grant)  # type: ignore[arg-type]
        )
        command = 'curl -s -o /dev/null -d "{}" "${ANTHROPIC_BASE_URL:-http://127.0.0.1:1}/x"'
        runs = 10
        bare = [plain.run(command, timeout=60).duration for _ in range(runs)]
        fwd = [egress.run(command, timeout=60).duration for _ in range(runs)]
        print(f"one sandboxed command (curl), median of {runs}:")
        print(f"  no network              : {ms(statistics.median(bare))}")
        print(f"  with the egress forwarder: {ms(statistics.median(fwd))}")


if __name__ == "__main__":
    main()
