"""Running commands for the agent and for verification.

Every command goes through a ``Sandbox``. Today there is one backend, ``PlainSandbox``: a
scrubbed environment, a process group killed on timeout or cancel, capped output — but no
filesystem or network isolation yet (bubblewrap and docker backends come with the isolation
issue and slot in behind the same Protocol).
"""

from errands.sandbox.base import CommandResult, Sandbox
from errands.sandbox.plain import PlainSandbox

__all__ = ["CommandResult", "PlainSandbox", "Sandbox"]
