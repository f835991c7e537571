"""Which forge a project (or an origin) belongs to. Forges are the modules of this package,
found by name, so a new one is one new module and no edit elsewhere."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache

from errands.domain import JobKind
from errands.forges.base import Forge, Stage
from errands.forges.local import LocalForge
from errands.settings import Settings
from errands.store import Project

_NOT_FORGES = frozenset({"base", "registry", "local"})


@cache
def _forge_modules() -> tuple[str, ...]:
    import errands.forges as package

    names = (m.name for m in pkgutil.iter_modules(package.__path__) if not m.ispkg)
    return tuple(sorted(f"errands.forges.{n}" for n in names if n not in _NOT_FORGES))


def forges(settings: Settings) -> list[Forge]:
    """Every forge for these settings, the local one last (it claims everything)."""
    found: list[Forge] = [importlib.import_module(m).forge(settings) for m in _forge_modules()]
    return [*found, LocalForge()]


def forge_for(settings: Settings, project: Project) -> Forge:
    return next(f for f in forges(settings) if f.claims(project))


def forge_for_origin(settings: Settings, origin: str) -> Forge:
    return next((f for f in forges(settings) if f.claims_origin(origin)), LocalForge())


def stages(settings: Settings) -> Mapping[JobKind, Stage]:
    merged: dict[JobKind, Stage] = {}
    for forge in forges(settings):
        merged.update(forge.stages())
    return merged
