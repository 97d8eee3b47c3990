"""Venvs for peers and servers that mlambda is measured against, kept outside the
repository (~/.cache/mlambda-bench, or MLAMBDA_BENCH_VENVS) so that none of them ever
becomes a dependency of mlambda. Each is made on first use, and made again when what it
should hold changes (its requirements, pinned exactly, are stamped inside it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

from bench.common import ROOT

VENVS = Path(os.environ.get("MLAMBDA_BENCH_VENVS", Path.home() / ".cache" / "mlambda-bench"))


def pins(*names: str) -> list[str]:
    """mlambda's own pins (pyproject.toml) of these packages: a peer runs the model with
    the same numpy, onnxruntime, Pillow... as mlambda."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    by_name = {re.split(r"[=<>!~\[ ]", d, maxsplit=1)[0].lower(): d for d in deps}
    return [by_name[name] for name in names]


def bench_venv(name: str, requirements: list[str], see_mlambda: bool = False) -> Path:
    """The python of venv `name` holding `requirements`. With `see_mlambda`, it also sees
    this checkout and the packages of the venv running this script (a .pth file), so a
    server installed there (granian) serves mlambda's current code with mlambda's own
    dependencies, without copying them."""
    home = VENVS / name
    python, stamp = home / "bin" / "python", home / ".requirements"
    paths = [str(ROOT), sysconfig.get_paths()["purelib"]] if see_mlambda else []
    wanted = "\n".join([*requirements, *paths])
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    print(f"bench: making {home} ({', '.join(requirements)})", file=sys.stderr, flush=True)
    venv.create(home, with_pip=True, clear=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True)
    if paths:
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip()
        Path(purelib, "mlambda-bench.pth").write_text("\n".join(paths) + "\n")
    stamp.write_text(wanted)
    return python
