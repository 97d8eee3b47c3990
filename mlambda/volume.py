"""The volume: a directory every instance can read (the EFS of this system), and the
models in it, each swapped atomically.

Layout under the volume root (`MLAMBDA_VOLUME` inside an instance):

    models/<name>/versions/<sha256>/<filename>   immutable, written once
    models/<name>/current -> versions/<sha256>/<filename>   a symlink, flipped by rename

Writers (`ModelStore`, in the gateway) never change a file in place; readers (`Model`, in
a handler) look at the symlink once per call (one readlink, no file read) and load a new
version in the background, swapping it in only once it has loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from mlambda.errors import BadRequest, NotFound

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FILENAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Set by the instance runtime: report(name, sha256, error or None) after each load.
Reporter = Callable[[str, str, str | None], None]
_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def volume_root() -> Path:
    root = os.environ.get("MLAMBDA_VOLUME")
    if not root:
        raise RuntimeError("MLAMBDA_VOLUME is not set: not running inside an mlambda instance")
    return Path(root)


def current_link(root: Path, name: str) -> Path:
    return root / "models" / name / "current"


# -- the reader's side (in an instance) --------------------------------------------------


@dataclass(frozen=True)
class Loaded(Generic[T]):
    sha256: str
    path: Path
    value: T


class Model(Generic[T]):
    """A model of the volume, kept loaded. `get()` is cheap: one readlink. When the current
    version changes, it is loaded on a background thread while the old one keeps
    serving; if the new one fails to load, the old one stays and the failure is reported.
    The first load (nothing to serve with yet) happens in the caller.
    """

    def __init__(self, name: str, loader: Callable[[Path], T], root: Path | None = None) -> None:
        self.name = name
        self.loader = loader
        self.root = root
        self.loaded: Loaded[T] | None = None
        self.failed_target: str | None = None
        self.loading: threading.Thread | None = None
        self.lock = threading.Lock()

    def link(self) -> Path:
        return current_link(self.root or volume_root(), self.name)

    def get(self) -> T:
        link = self.link()
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            if self.loaded is not None:
                return self.loaded.value
            raise NotFound(f"model {self.name!r} has no current version in the volume") from None
        loaded = self.loaded
        if loaded is None:
            self.load(target, link)
            assert self.loaded is not None
            return self.loaded.value
        if target != str(loaded.path.relative_to(link.parent)) and target != self.failed_target:
            with self.lock:
                if self.loading is None:
                    self.loading = threading.Thread(
                        target=self.load_in_background, args=(target, link), daemon=True)
                    self.loading.start()
        return loaded.value

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for a background load to finish (for callers that want the new one now)."""
        thread = self.loading
        if thread is not None:
            thread.join(timeout)

    def load(self, target: str, link: Path) -> None:
        path = link.parent / target
        sha = path.parent.name
        try:
            value = self.loader(path)
        except Exception as exc:
            self.failed_target = target
            self.report(sha, f"{type(exc).__name__}: {exc}")
            if self.loaded is None:
                raise
            return
        self.loaded = Loaded(sha, path, value)
        self.failed_target = None
        self.report(sha, None)

    def load_in_background(self, target: str, link: Path) -> None:
        try:
            self.load(target, link)
        finally:
            with self.lock:
                self.loading = None

    def report(self, sha: str, error: str | None) -> None:
        if _reporter is not None:
            _reporter(self.name, sha, error)


# -- the writer's side (in the gateway) --------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    name: str
    sha256: str
    filename: str
    size: int


class ModelStore:
    """Stores model files content-addressed and flips `current` by atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "models").mkdir(parents=True, exist_ok=True)

    def model_dir(self, name: str) -> Path:
        if not NAME.match(name):
            raise BadRequest(f"model name {name!r}: expected 1-64 letters, digits, '-' or '_'")
        return self.root / "models" / name

    def incoming(self, name: str) -> Path:
        d = self.model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        return d / f".incoming-{secrets.token_hex(8)}"

    def commit(self, name: str, filename: str, tmp: Path, expected_sha256: str) -> ModelVersion:
        """Verify a fully written temporary file and store it as an immutable version.
        A file whose checksum does not match is deleted and never becomes a version."""
        if not FILENAME.match(filename):
            tmp.unlink(missing_ok=True)
            raise BadRequest(f"filename {filename!r}: expected letters, digits, '.', '-', '_'")
        if not SHA256.match(expected_sha256):
            tmp.unlink(missing_ok=True)
            raise BadRequest("x-content-sha256: expected the 64 lowercase hex digits of the "
                             "file's SHA-256")
        h = hashlib.sha256()
        size = 0
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
            os.fsync(f.fileno())
        actual = h.hexdigest()
        if actual != expected_sha256:
            tmp.unlink(missing_ok=True)
            raise BadRequest(f"checksum mismatch: the upload's SHA-256 is {actual}, the client "
                             f"said {expected_sha256}; the upload was discarded")
        final_dir = self.model_dir(name) / "versions" / actual
        final = final_dir / filename
        if final.exists():
            tmp.unlink()
        else:
            final_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)  # every instance reads it, whatever the gateway's umask
            os.rename(tmp, final)
            _fsync_dir(final_dir)
        return ModelVersion(name, actual, filename, size)

    def flip(self, version: ModelVersion) -> None:
        """Point `current` at a stored version: a new symlink renamed over the old one."""
        d = self.model_dir(version.name)
        target = Path("versions") / version.sha256 / version.filename
        if not (d / target).is_file():
            raise NotFound(f"model {version.name} has no stored version {version.sha256}")
        tmp = d / f".current-{secrets.token_hex(8)}"
        os.symlink(target, tmp)
        os.rename(tmp, d / "current")
        _fsync_dir(d)

    def current(self, name: str) -> str | None:
        try:
            return Path(os.readlink(self.model_dir(name) / "current")).parent.name
        except FileNotFoundError:
            return None

    def sweep(self) -> None:
        """Remove what an interrupted upload or flip left behind (never a stored version)."""
        models = self.root / "models"
        for d in models.iterdir() if models.exists() else ():
            for leftover in d.glob(".incoming-*"):
                leftover.unlink(missing_ok=True)
            for leftover in d.glob(".current-*"):
                leftover.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
