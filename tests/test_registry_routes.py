"""Routes with options in the registry (real SQLite), and a data directory from before
route options migrated in place."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from mlambda.registry import Idempotency, Registry, Route
from mlambda.server import Platform
from mlambda.settings import REPO_FUNCTIONS, Settings

OLD_SCHEMA = """
CREATE TABLE functions (name TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE routes (
    method TEXT NOT NULL, path TEXT NOT NULL,
    function TEXT NOT NULL REFERENCES functions(name), qualifier TEXT NOT NULL,
    PRIMARY KEY (method, path)
);
INSERT INTO functions VALUES ('echo', 0);
INSERT INTO routes VALUES ('POST', '/echo', 'echo', 'live');
"""


def test_a_routes_table_from_before_options_is_migrated_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "registry.db")
    db.executescript(OLD_SCHEMA)
    db.close()
    registry = Registry(tmp_path)
    assert registry.routes_migrated
    assert registry.routes() == [Route("POST", "/echo", "echo", "live", None)]
    rule = Idempotency("id", ("payload",), 5.0)
    assert registry.set_route_idempotency("POST", "/echo", rule).idempotency == rule
    registry.add_route(Route("POST", "/other", "echo", "live", None))
    registry.close()
    registry = Registry(tmp_path)  # once only
    assert not registry.routes_migrated
    assert registry.routes() == [Route("POST", "/echo", "echo", "live", rule),
                                 Route("POST", "/other", "echo", "live", None)]
    registry.set_route_idempotency("POST", "/echo", None)
    assert registry.routes()[0].idempotency is None
    registry.close()


def test_an_upgraded_data_directory_gets_the_seeds_route_options(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "data", seed=REPO_FUNCTIONS / "seed.toml")
    first = Platform(settings)
    inference = next(r for r in first.registry.routes() if r.path == "/inference")
    assert inference.idempotency == Idempotency("esun_uuid", ("image",), 300.0)
    first.registry.close()
    os.rmdir(first.engine.rundir)
    # as a data directory made before route options: no column, no option
    db = sqlite3.connect(settings.data / "registry.db")
    db.execute("ALTER TABLE routes DROP COLUMN idempotency")
    db.commit()
    db.close()
    again = Platform(settings)
    routes = {r.path: r for r in again.registry.routes()}
    assert routes["/inference"].idempotency == inference.idempotency
    assert routes["/echo"].idempotency is None
    again.registry.close()
    os.rmdir(again.engine.rundir)
