"""What a project may declare for its setup commands' network, and how host:port names are
read and checked: bad names are refused clearly; names resolving to this machine, the local
network or link-local addresses are refused unless the operator allows them."""

from __future__ import annotations

import pytest

from errands.egress.hosts import HostPort, Unreachable, parse_host, parse_hosts, resolve
from errands.errors import ConfigError, InvalidInput
from errands.settings import DEFAULT_SETUP_HOSTS, Settings
from errands.store import Project
from errands.workflow.project_config import effective_config, parse_repo_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pypi.org:443", HostPort("pypi.org", 443)),
        ("PyPI.org.:443", HostPort("pypi.org", 443)),
        ("10.0.0.7:3128", HostPort("10.0.0.7", 3128)),
        ("[::1]:8080", HostPort("::1", 8080)),
    ],
)
def test_host_port_pairs_are_read(text: str, expected: HostPort) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize(
    "text",
    ["pypi.org", "pypi.org:0", "pypi.org:99999", "pypi.org:４４３", ":443", "a b:443", "x/y:80"],
)
def test_bad_host_port_pairs_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="host"):
        parse_host(text)


@pytest.mark.parametrize("host", ["127.0.0.1:80", "localhost:80", "169.254.169.254:80", "[::1]:80"])
def test_private_addresses_need_the_operator(host: str) -> None:
    target = parse_host(host)
    with pytest.raises(Unreachable, match="non-public address"):
        resolve(target, private_ok=False)
    assert resolve(target, private_ok=True)


def project(
    *,
    file: bool | str = False,  # [setup] network in .errands.toml
    setting: bool | None = None,  # the project's own setting in Errands
    setup: list[str] | None = None,
    hosts: list[str] | None = None,
) -> Project:
    repo: dict[str, object] = {"commands": ["pip install -e ."], "network": file}
    if hosts is not None:
        repo["hosts"] = hosts
    return Project(
        name="p",
        origin="/src/p",
        base_branch="main",
        detected_commands=[],
        setup_commands=setup,
        setup_network=setting,
        repo_config={"setup": repo},
    )


def test_setup_network_is_an_allowlist_by_default_and_the_host_only_when_asked() -> None:
    settings = Settings()

    def egress(**kwargs: object) -> str:
        return effective_config(project(**kwargs), settings).setup_egress  # type: ignore[arg-type]

    off = effective_config(project(), settings)
    assert (off.setup_network, off.setup_egress) == (False, "off")
    on = effective_config(project(file=True), settings)
    assert (on.setup_network, on.setup_egress) == (True, "allowlist")
    assert on.setup_hosts == tuple(str(h) for h in parse_hosts(DEFAULT_SETUP_HOSTS))
    declared = effective_config(project(file=True, hosts=["pypi.org:443"]), settings)
    assert declared.setup_hosts == ("pypi.org:443",)
    host = effective_config(project(file="host"), settings)
    assert (host.setup_network, host.setup_egress) == (True, "host")
    # The project's own setting wins: "off" over anything, "on" keeps the file's choice of how.
    assert egress(file="host", setting=False) == "off"
    assert egress(file=True, setting=False) == "off"
    assert egress(file=False, setting=True) == "allowlist"
    assert egress(file="host", setting=True) == "host"
    assert egress(file=True, setup=[]) == "off"  # no setup commands, no network
    # The project's own list (errands project set --setup-host) wins over the file's.
    own = project(file=True, hosts=["pypi.org:443"])
    own.setup_hosts = ["registry.npmjs.org:443"]
    assert effective_config(own, settings).setup_hosts == ("registry.npmjs.org:443",)


def test_a_bad_allowlist_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match=r"setup\.hosts.*not host:port"):
        parse_repo_config('[setup]\nhosts = ["pypi.org"]\n')
    with pytest.raises(InvalidInput, match=r"setup\.network"):
        parse_repo_config('[setup]\nnetwork = "everything"\n')
    bad = Settings(egress_setup_hosts=["pypi.org"])
    with pytest.raises(ConfigError, match="ERRANDS_EGRESS_SETUP_HOSTS"):
        effective_config(project(file=True), bad)


def test_the_environment_lists_hosts_with_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRANDS_EGRESS_SETUP_HOSTS", "pypi.org:443, mirror.lan:8080")
    monkeypatch.setenv("ERRANDS_EGRESS_PRIVATE_HOSTS", "mirror.lan:8080")
    settings = Settings()
    assert settings.egress_setup_hosts == ["pypi.org:443", "mirror.lan:8080"]
    assert settings.egress_private_hosts == ["mirror.lan:8080"]
