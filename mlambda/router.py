"""Routes and aliases, resolved in memory on the request path: route -> function:alias
-> the version that runs (a weighted alias picks one of its two versions)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from mlambda.errors import NotFound
from mlambda.registry import LATEST, Alias, Registry, Route
from mlambda.runtime.dispatcher import VersionRef


@dataclass(frozen=True)
class Target:
    function: str
    qualifier: str


class Router:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.routes: dict[tuple[str, str], Route] = {}
        self.aliases: dict[tuple[str, str], Alias] = {}
        self.versions: dict[tuple[str, str], VersionRef] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read the registry; swaps whole dicts so readers never see half a change."""
        routes = {(r.method, r.path): r for r in self.registry.routes()}
        aliases = {(a.function, a.name): a for a in self.registry.aliases()}
        versions = {(v.function, v.version): v
                    for f in self.registry.functions() for v in self.registry.versions(f)}
        self.routes, self.aliases, self.versions = routes, aliases, versions

    def resolve(self, function: str, qualifier: str | None) -> VersionRef:
        """function + (alias | version | None for $LATEST) -> the version to run now."""
        q = qualifier or LATEST
        alias = self.aliases.get((function, q))
        if alias is not None:
            q = alias.version
            if alias.extra_version is not None and random.random() < alias.extra_weight:
                q = alias.extra_version
        version = self.versions.get((function, q))
        if version is None:
            if not any(f == function for f, _ in self.versions):
                raise NotFound(f"Function not found: {function}")
            raise NotFound(f"Function {function} has no version or alias {qualifier}")
        return version
