"""The sandbox's only way out: an egress proxy on the host that forwards model calls to the
configured endpoints with the real key (the sandbox holds a placeholder), meters and
budget-checks every one, opens tunnels to an allowlist of hosts (package registries), and
refuses everything else. See ``proxy`` for the story, ``routes`` and ``hosts`` for what is
allowed, ``usage`` for metering, ``forwarder`` for the sandbox's end."""

from errands.egress.hosts import DEFAULT_SETUP_HOSTS, HostPort, parse_host, parse_hosts
from errands.egress.meter import Meter, ModelCall, Refusal, Unmetered
from errands.egress.proxy import EgressConfig, EgressProxy, egress_proxy
from errands.egress.routes import PLACEHOLDER_KEY, Route, model_routes
from errands.egress.usage import Usage

__all__ = [
    "DEFAULT_SETUP_HOSTS",
    "PLACEHOLDER_KEY",
    "EgressConfig",
    "EgressProxy",
    "HostPort",
    "Meter",
    "ModelCall",
    "Refusal",
    "Route",
    "Unmetered",
    "Usage",
    "egress_proxy",
    "model_routes",
    "parse_host",
    "parse_hosts",
]
