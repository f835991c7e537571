"""The egress proxy: the sandbox's only way out, one per job (or per sandbox), on the host.

It listens on a Unix socket in a private directory, which the sandbox sees bound inside (see
``errands.egress.forwarder``). Each request is one of:

- a model call on a route (``POST /anthropic/v1/messages``, ``POST /openai/responses``, …):
  the meter is asked first (budgets), the sandbox's placeholder key is replaced by the real one,
  the answer is relayed as it arrives, and its usage is read on the way and recorded;
- another allowed call on a route (model lists, token counting): forwarded with the key;
- ``CONNECT host:port`` or a plain ``http://host:port/...`` request to one of the allowed hosts
  (setup commands' package registries): a byte tunnel, or a plain forward, without keys;
- anything else: HTTP 403 with a JSON body saying what was refused and why.

HTTP/1.1 is parsed by h11 and upstream calls go through httpx (TLS verified), on an asyncio
loop in a thread of its own; the meter, which talks to the store, runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx

from errands.egress import forwarder
from errands.egress.hosts import HostPort, Unreachable, parse_host, resolve
from errands.egress.meter import Meter, ModelCall, Refusal, Unmetered
from errands.egress.routes import AUTH_HEADERS, Route
from errands.egress.usage import Usage, UsageReader
from errands.errors import ErrandsError, InvalidInput
from errands.sandbox.policy import EgressGrant

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_CONNECTIONS = 256  # open at once from one sandbox; more are closed at once
IDLE_SECONDS = 900.0  # a connection silent this long between requests is closed
_READ = 65536
# Headers that describe one hop, not the message: never passed on.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "content-encoding",
    }
)


@dataclass(frozen=True)
class EgressConfig:
    routes: tuple[Route, ...] = ()  # model endpoints (errands.egress.routes.model_routes)
    hosts: tuple[HostPort, ...] = ()  # CONNECT / plain-HTTP tunnels (package registries)
    # Of ``hosts``, those the operator lets resolve to private addresses.
    private_hosts: tuple[HostPort, ...] = ()


@dataclass
class _Answer:
    """What the proxy answers itself (a refusal), in the one JSON error shape."""

    status: int
    refusal: Refusal
    headers: list[tuple[str, str]] = field(default_factory=list)

    def body(self) -> bytes:
        # Readable by the Anthropic SDK (type/error.type/error.message) and the OpenAI one
        # (error.message/type/code) alike, so a CLI shows the reason to its user.
        return json.dumps(
            {
                "type": "error",
                "error": {
                    "type": "egress_refused",
                    "code": self.refusal.code,
                    "message": self.refusal.message,
                },
                "refused": self.refusal.target,
            }
        ).encode()


@dataclass(frozen=True)
class _Exchange:
    """One request on a connection, and where its answer goes."""

    conn: h11.Connection
    writer: asyncio.StreamWriter
    method: str
    target: str
    asked: str  # "METHOD target", as refusals name it
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def of(
        cls, conn: h11.Connection, request: h11.Request, writer: asyncio.StreamWriter
    ) -> _Exchange:
        method = request.method.decode("ascii", "replace").upper()
        target = request.target.decode("ascii", "replace")
        headers = [(name, value) for name, value in request.headers]
        return cls(conn, writer, method, target, f"{method} {target}"[:300], headers)


class EgressProxy:
    """Serve ``config`` on a Unix socket until ``close``. Use ``egress_proxy`` instead."""

    def __init__(
        self,
        config: EgressConfig,
        meter: Meter | None = None,
        *,
        directory: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.meter: Meter = meter or Unmetered()
        self.refusals: list[Refusal] = []
        self.calls: list[tuple[ModelCall, Usage | None]] = []
        # Private: 0700, so no other user of this machine reaches the socket.
        self.directory = Path(tempfile.mkdtemp(prefix="errands-egress-", dir=directory))
        self.socket = self.directory / "egress.sock"
        self.port = port or random.randint(20000, 40000)  # a port, not a secret
        self._routes: dict[str, Route] = {route.name: route for route in config.routes}
        self._open = 0  # connections being served
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: asyncio.AbstractServer | None = None
        self._client: httpx.AsyncClient | None = None
        self._thread = threading.Thread(target=self._run, name="egress-proxy", daemon=True)

    # -- life cycle -----------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grant(self) -> EgressGrant:
        env: dict[str, str] = {}
        for route in self.config.routes:
            env.update(route.sandbox_env(self.origin))
        if self.config.hosts:
            for name in ("HTTP_PROXY", "HTTPS_PROXY"):
                env[name] = env[name.lower()] = self.origin
            env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return EgressGrant(
            socket=self.socket, port=self.port, env=env, forwarder=Path(forwarder.__file__)
        )

    def start(self) -> EgressProxy:
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None or self._server is None:
            self.close()
            raise ErrandsError(f"The egress proxy did not start: {self._failure}")
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(600.0, connect=30.0),
                follow_redirects=False,
                trust_env=False,  # the worker's own proxy settings are not the sandbox's
                # A request's head and body leave as separate writes: without this, Nagle's
                # algorithm holds the body until the head is acknowledged, which a server
                # delaying its acknowledgement makes 40 ms (bench/egress_proxy.py).
                transport=httpx.AsyncHTTPTransport(
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
                ),
            )
            self._server = self._loop.run_until_complete(
                asyncio.start_unix_server(self._serve, path=str(self.socket))
            )
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            # Connections still open end here (a CLI's idle keep-alive, a stream whose
            # client is gone): their tasks end as done, not cancelled (see _serve).
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            with contextlib.suppress(BaseException):
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            with contextlib.suppress(BaseException):
                self._loop.run_until_complete(self._client.aclose())
            # A meter call already running in a thread (recording a finished call) ends
            # before the proxy is gone.
            with contextlib.suppress(BaseException):
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    # -- one connection -------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:  # a sandbox opening sockets without end
            refusal = _refuse(503, "too_many_connections", "", "Too many connections at once.")
            body = refusal.body()
            head = (
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            with contextlib.suppress(Exception):
                writer.write(head.encode() + body)
                await writer.drain()
                writer.close()
            return
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)
        self._open += 1
        try:
            while True:
                event = await _next(conn, reader)
                if not isinstance(event, h11.Request):
                    break
                if not await self._exchange(_Exchange.of(conn, event, writer), reader):
                    break
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                bad = _Exchange(conn, writer, "", "", "?", [])
                answer = _refuse(400, "bad_request", "?", f"Not an HTTP/1.1 request: {exc}")
                with contextlib.suppress(Exception):
                    await self._answer(bad, answer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # The proxy is closing. Ending as done rather than cancelled: Python 3.11's
            # stream server asks a finished handler for its exception, which raises when
            # it was cancelled and is logged as an error.
            pass
        except Exception:
            log.exception("egress proxy: a connection failed")
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, ex: _Exchange, reader: asyncio.StreamReader) -> bool:
        """Answer one request; False when the connection must end afterwards."""
        if ex.method == "CONNECT":
            return await self._connect(ex, reader)
        if ex.conn.they_are_waiting_for_100_continue:  # curl, for a body over 1 MB
            continue_ = h11.InformationalResponse(status_code=100, headers=[])
            ex.writer.write(ex.conn.send(continue_) or b"")
            await ex.writer.drain()
        body = await _body(ex.conn, reader)
        if body is None:
            await self._answer(ex, _refuse(413, "too_large", ex.asked, "The body is too large."))
            return False
        if ex.target.startswith(("http://", "https://")):
            parts = urlsplit(ex.target)
            ours = parts.hostname in ("127.0.0.1", "localhost") and parts.port == self.port
            if not (parts.scheme == "http" and ours):
                await self._plain(ex, body)
                return True
            # A client that sends everything to its HTTP_PROXY, the forwarder's base URLs too.
            ex = replace(ex, target=parts.path + (f"?{parts.query}" if parts.query else ""))
        await self._route(ex, body)
        return True

    async def _route(self, ex: _Exchange, body: bytes) -> None:
        path, _, query = ex.target.partition("?")
        name, _, rest = path.lstrip("/").partition("/")
        route = self._routes.get(name)
        if route is not None and ex.method == "HEAD" and rest == "":
            # A CLI's connectivity check of its base URL: answered here, nothing leaves.
            await self._ok(ex)
            return
        matched = route.match(ex.method, rest) if route is not None else None
        if route is None or matched is None:
            await self._answer(ex, self._not_allowed(ex.asked))
            return
        call = matched.call
        headers = _forwarded_headers(ex.headers)
        headers.update(route.auth_headers())
        model_call = None
        if call.protocol is not None:
            parsed = _model_request(body)
            if parsed is None:
                message = "A model call's body must be a JSON object."
                await self._answer(ex, _refuse(400, "bad_request", ex.asked, message))
                return
            stream = call.stream or parsed.get("stream") is True
            if call.protocol == "openai-chat" and stream:
                # The usage of a streamed chat completion comes only when asked for.
                options = parsed.get("stream_options")
                parsed["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                body = json.dumps(parsed).encode()
            model = matched.model or parsed.get("model")
            model_call = ModelCall(
                route=route.name,
                protocol=call.protocol,
                model=model[:200] if isinstance(model, str) else "",
                stream=stream,
                request_chars=len(body),
            )
            refusal = await self._check(model_call, ex.asked)
            if refusal is not None:
                await self._answer(ex, refusal)
                return
        reader: UsageReader | None = None
        recorded = False

        async def record() -> None:
            nonlocal recorded
            if model_call is not None and reader is not None and not recorded:
                recorded = True
                await self._record(model_call, reader.finish())

        try:
            async with self._upstream(ex.method, route.upstream(rest, query), headers, body) as up:
                if isinstance(up, _Answer):
                    await self._answer(ex, up)
                    return
                if call.protocol is not None:
                    reader = UsageReader(call.protocol, up.headers.get("content-type", ""))
                # Recorded before the answer's end reaches the client: once a CLI has its
                # answer, the job's usage already counts it.
                await self._relay(ex, up, reader, before_end=record)
        finally:
            # And whatever became of the relay: a client that went away mid-stream was still
            # billed for what the provider sent.
            await record()

    async def _check(self, call: ModelCall, asked: str) -> _Answer | None:
        """The meter's refusal of ``call``, if it refuses it."""
        try:
            await asyncio.to_thread(self.meter.check_before, call)
        except ErrandsError as exc:
            return _refuse(403, exc.code, asked, exc.message)
        except Exception:
            log.exception("egress proxy: the meter failed before a call")
            message = "The call could not be checked against budgets."
            return _refuse(403, "meter_failed", asked, message)
        return None

    async def _record(self, call: ModelCall, usage: Usage | None) -> None:
        self.calls.append((call, usage))
        try:
            await asyncio.to_thread(self.meter.record, call, usage)
        except Exception:
            log.exception("egress proxy: could not record a call's usage")

    async def _plain(self, ex: _Exchange, body: bytes) -> None:
        """A plain-HTTP request in absolute form, to an allowed host: forwarded as it is."""
        parts = urlsplit(ex.target)
        try:
            host = parse_host(f"{parts.hostname}:{parts.port or 80}")
        except (InvalidInput, ValueError):
            host = None
        if host is None or parts.scheme != "http" or host not in self.config.hosts:
            await self._answer(ex, self._not_allowed(ex.asked))
            return
        try:
            address = (await self._addresses(host))[0]
        except Unreachable as exc:
            await self._answer(ex, _refuse(502, "unreachable", ex.asked, str(exc)))
            return
        # To the address that was checked, with the name in the Host header.
        netloc = f"[{address}]" if ":" in address else address
        url = f"http://{netloc}:{host.port}{parts.path or '/'}" + (
            f"?{parts.query}" if parts.query else ""
        )
        headers = _forwarded_headers(ex.headers, keep_auth=True)
        headers["host"] = parts.netloc
        async with self._upstream(ex.method, url, headers, body) as up:
            if isinstance(up, _Answer):
                await self._answer(ex, up)
            else:
                await self._relay(ex, up, None)

    async def _connect(self, ex: _Exchange, reader: asyncio.StreamReader) -> bool:
        await _body(ex.conn, reader)
        try:
            host = parse_host(ex.target)
        except InvalidInput:
            host = None
        if host is None or host not in self.config.hosts:
            await self._answer(ex, self._not_allowed(ex.asked))
            return False
        try:
            up_reader, up_writer = await self._dial(host)
        except (Unreachable, OSError, TimeoutError) as exc:
            reason = str(exc) or f"{host} did not answer"
            await self._answer(ex, _refuse(502, "unreachable", ex.asked, reason))
            return False
        ex.writer.write(ex.conn.send(h11.Response(status_code=200, headers=[])) or b"")
        await ex.writer.drain()
        early, _ = ex.conn.trailing_data
        if early:
            up_writer.write(early)
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, ex.writer))
        return False

    async def _addresses(self, host: HostPort) -> list[str]:
        """The addresses of ``host``, checked (see errands.egress.hosts)."""
        private_ok = host in self.config.private_hosts
        found = await asyncio.to_thread(resolve, host, private_ok=private_ok)
        return list(dict.fromkeys(address for _, address in found))

    async def _dial(self, host: HostPort) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to one of the checked addresses of ``host``, tried in order."""
        failure: Exception = Unreachable(f"{host} did not answer")
        for address in await self._addresses(host):
            try:
                return await asyncio.wait_for(asyncio.open_connection(address, host.port), 30)
            except (OSError, TimeoutError) as exc:
                failure = exc
        raise failure

    # -- upstream and answers -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _upstream(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> AsyncIterator[httpx.Response | _Answer]:
        assert self._client is not None
        request = self._client.build_request(method, url, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            host = urlsplit(url).netloc
            yield _refuse(502, "upstream_failed", f"{method} {host}", f"{host}: {exc!r}"[:500])
            return
        try:
            yield response
        finally:
            await response.aclose()

    async def _relay(
        self,
        ex: _Exchange,
        response: httpx.Response,
        reader: UsageReader | None,
        *,
        before_end: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        conn, writer = ex.conn, ex.writer
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _HOP
        ]
        writer.write(conn.send(h11.Response(status_code=response.status_code, headers=headers)))
        await writer.drain()
        # Decoded bytes (httpx undoes any content encoding), relayed as they arrive: a
        # stream's events reach the client one by one, and the meter reads plain text.
        async for chunk in response.aiter_bytes():
            if reader is not None:
                reader.feed(chunk)
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()
        if before_end is not None:
            await before_end()
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    def _not_allowed(self, asked: str) -> _Answer:
        allowed = [f"/{name}/…" for name in self._routes] + [str(h) for h in self.config.hosts]
        return _refuse(
            403,
            "not_allowed",
            asked,
            f"Errands' egress proxy refused {asked}: not on this sandbox's allowlist "
            f"(allowed: {', '.join(allowed) or 'nothing'}).",
        )

    async def _ok(self, ex: _Exchange) -> None:
        empty = h11.Response(status_code=200, headers=[("content-length", "0")])
        ex.writer.write(ex.conn.send(empty) or b"")
        ex.writer.write(ex.conn.send(h11.EndOfMessage()) or b"")
        await ex.writer.drain()

    async def _answer(self, ex: _Exchange, answer: _Answer) -> None:
        conn, writer = ex.conn, ex.writer
        self.refusals.append(answer.refusal)
        log.info("egress proxy refused %s: %s", answer.refusal.target, answer.refusal.code)
        try:
            await asyncio.to_thread(self.meter.refused, answer.refusal)
        except Exception:
            log.exception("egress proxy: could not report a refusal")
        body = answer.body()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            *answer.headers,
        ]
        writer.write(conn.send(h11.Response(status_code=answer.status, headers=headers)) or b"")
        if ex.method != "HEAD":  # an answer to HEAD has the headers of a body, and no body
            writer.write(conn.send(h11.Data(data=body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()


def _refuse(status: int, code: str, asked: str, message: str) -> _Answer:
    return _Answer(status, Refusal(code=code, target=asked, message=message))


async def _next(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await asyncio.wait_for(reader.read(_READ), IDLE_SECONDS))


async def _body(conn: h11.Connection, reader: asyncio.StreamReader) -> bytes | None:
    """The request's body, or None past MAX_REQUEST_BYTES."""
    body = bytearray()
    while True:
        event = await _next(conn, reader)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REQUEST_BYTES:
                return None
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:
            return bytes(body)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _forwarded_headers(
    headers: list[tuple[bytes, bytes]], *, keep_auth: bool = False
) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in _HOP or name.startswith("proxy-") or (name in AUTH_HEADERS and not keep_auth):
            continue
        found[name] = raw_value.decode("latin-1")
    found["accept-encoding"] = "identity"
    return found


def _model_request(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


@contextlib.contextmanager
def egress_proxy(
    config: EgressConfig, meter: Meter | None = None, *, directory: Path | None = None
) -> Iterator[EgressProxy]:
    """A running proxy for one job or sandbox: ``proxy.grant`` goes into the sandbox's policy
    (``SandboxPolicy.egress``). Stopped, and its socket removed, when the block ends."""
    proxy = EgressProxy(config, meter, directory=directory).start()
    try:
        yield proxy
    finally:
        proxy.close()
