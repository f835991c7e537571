"""The sandbox's end of the egress proxy: listens on the sandbox's own loopback and relays
every connection, byte for byte, to the proxy's Unix socket bound into the sandbox.

Run by the sandbox before the command (``python3 -I forwarder.py SOCKET PORT``): it binds and
listens, forks a child that serves, and the parent exits 0, so the command starts only once
the port accepts connections. The child lives in the sandbox's PID namespace and dies with it.

Standard library only, and nothing of Errands: it runs inside the sandbox with the system's
``/usr/bin/python3`` (any Python 3), which every Debian machine that runs Errands has; the
worker's own interpreter may live in a virtualenv under the (hidden) home. It is no security
boundary: the command could talk to the socket itself. The proxy on the host decides.
"""

import contextlib
import os
import socket
import sys
import threading

_CHUNK = 65536


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _relay(client: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    if os.fork() != 0:
        os._exit(0)  # listening: the command may start
    # Let go of the command's output pipe, so its output ends when the command's does.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        client, _ = listener.accept()
        # The proxy's answer arrives in pieces (headers, then body) and is sent on as it
        # comes: with Nagle's algorithm a piece waits for the client to acknowledge the one
        # before, which it delays by up to 40 ms, on every response the agent gets.
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_relay, args=(client, path), daemon=True).start()


if __name__ == "__main__":
    main()
