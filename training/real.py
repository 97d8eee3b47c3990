"""The real crops of ../shared/real-dev (read from there, never copied into the repository):
88 labelled by their official file names (noisy: `visual_flags` marks those whose label
looks wrong) and 277 without labels. One fixed 2-fold split of the labelled crops, so that
every figure reported on real crops comes from crops the model reporting it never trained
on.

The folder is `$REAL_DEV`, else ../shared/real-dev next to the repository's parent (where
the worktrees and the main checkout both find it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDS = 2


@dataclass(frozen=True)
class Crop:
    name: str
    path: Path
    label: str | None  # None: unlabelled
    source: str  # the folder of the original data set it came from
    flag: str | None  # why the official label looks wrong, if it does
    fold: int  # 0 or 1 for labelled crops; -1 for unlabelled


def real_dir() -> Path:
    env = os.environ.get("REAL_DEV")
    if env:
        return Path(env)
    for parent in (ROOT.parent, ROOT.parent.parent):
        candidate = parent / "shared" / "real-dev"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no real-dev folder: set REAL_DEV to ../shared/real-dev")


def _source(entry: str) -> str:
    """'owner/repo:Some_Model/data/img/123_x.jpg' -> 'Some_Model/data/img' (the data set's
    folder: its train/ has one folder per image)."""
    return "/".join(entry.split(":", 1)[1].split("/")[:3])


def labelled(folder: Path | None = None) -> list[Crop]:
    """The labelled crops, each with its fold: within each source folder, sorted by name,
    alternately 0 and 1 (so both folds have every source in equal parts)."""
    folder = folder or real_dir()
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    flags = index.get("visual_flags", {})
    by_source: dict[str, list[str]] = {}
    for name in sorted(index["labels"]):
        by_source.setdefault(_source(index["sources"][name]), []).append(name)
    out = []
    for source, names in sorted(by_source.items()):
        for i, name in enumerate(names):
            out.append(Crop(name, folder / name, index["labels"][name], source,
                            flags.get(name), i % FOLDS))
    return sorted(out, key=lambda c: c.name)


def unlabelled(folder: Path | None = None) -> list[Crop]:
    folder = folder or real_dir()
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    return [Crop(name, folder / "unlabeled" / name, None, _source(entry), None, -1)
            for name, entry in sorted(index["unlabeled_sources"].items())
            if (folder / "unlabeled" / name).exists()]


def in_fold(crops: list[Crop], fold: int | None) -> Iterator[Crop]:
    """The crops of `fold` (all when None)."""
    return (c for c in crops if fold is None or c.fold == fold)
