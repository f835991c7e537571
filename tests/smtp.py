"""A real SMTP server on loopback (aiosmtpd) whose mail the tests read."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support import free_port, wait_for


class Inbox:
    """What the loopback SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def code_for(self, to: str, subject: str, seen: int = 0) -> str:
        def find() -> str | None:
            found = [m for m in self.to(to) if subject in m["Subject"]]
            if len(found) <= seen:
                return None
            match = re.search(r"code: (\S+)", body_of(found[seen]))
            return match.group(1) if match else None

        code: str = wait_for(find, timeout=20, what=f"mail to {to} about {subject!r}")
        return code


def body_of(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    return body.decode()


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
