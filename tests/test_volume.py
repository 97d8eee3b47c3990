"""The volume on a real directory: content-addressed versions, atomic flips, and a reader
that swaps in a new version only once it has loaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlambda.errors import BadRequest
from mlambda.volume import Model, ModelStore, set_reporter
from tests.conftest import wait_for


def push(store: ModelStore, name: str, content: bytes, filename: str = "m.txt") -> str:
    tmp = store.incoming(name)
    tmp.write_bytes(content)
    version = store.commit(name, filename, tmp, hashlib.sha256(content).hexdigest())
    store.flip(version)
    return version.sha256


def test_commit_refuses_a_checksum_mismatch_and_leaves_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    tmp = store.incoming("m")
    tmp.write_bytes(b"half")
    with pytest.raises(BadRequest, match="checksum mismatch"):
        store.commit("m", "m.txt", tmp, "0" * 64)
    assert not tmp.exists()
    assert store.current("m") is None
    assert not (tmp_path / "models" / "m" / "versions").exists()


def test_flip_is_a_rename_of_a_symlink(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = push(store, "m", b"one")
    second = push(store, "m", b"two")
    link = tmp_path / "models" / "m" / "current"
    assert link.is_symlink() and link.read_bytes() == b"two"
    assert store.current("m") == second != first
    assert not list((tmp_path / "models" / "m").glob(".current-*"))


def test_sweep_removes_interrupted_uploads(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    push(store, "m", b"one")
    store.incoming("m").write_bytes(b"interrupted")
    store.sweep()
    assert set(os.listdir(tmp_path / "models" / "m")) == {"current", "versions"}


def test_bad_names_are_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(BadRequest, match="model name"):
        store.incoming("../etc")
    tmp = store.incoming("m")
    tmp.write_bytes(b"x")
    with pytest.raises(BadRequest, match="filename"):
        store.commit("m", "../x", tmp, hashlib.sha256(b"x").hexdigest())


def test_reader_swaps_in_the_background_and_keeps_the_old_on_failure(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    reports: list[tuple[str, str, str | None]] = []
    set_reporter(lambda name, sha, error: reports.append((name, sha, error)))
    try:
        def load(path: Path) -> str:
            text = path.read_text()
            if text == "broken":
                raise ValueError("cannot load")
            return text

        model = Model("m", load, root=tmp_path)
        v1 = push(store, "m", b"one")
        assert model.get() == "one"
        assert reports == [("m", v1, None)]
        v2 = push(store, "m", b"two")
        wait_for(lambda: model.get() == "two", 5, "the new version")
        v3 = push(store, "m", b"broken")
        model.get()
        model.wait_idle(5)
        assert model.get() == "two"  # the old one keeps serving
        assert reports[-1][1] == v3 and "cannot load" in (reports[-1][2] or "")
        assert {r[1] for r in reports} == {v1, v2, v3}
    finally:
        set_reporter(None)
