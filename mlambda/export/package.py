"""What an exported function needs at run time on Lambda, and building it:

- its third-party requirements, derived from the bundle (its `preload`, the imports of its
  modules, and a `requirements.txt` if it has one), pinned to the versions mlambda itself
  pins or has installed;
- the small part of `mlambda` it imports (e.g. `mlambda.volume` for models on the volume),
  found by following imports, never the whole platform;
- Linux x86_64 wheels for the Lambda runtime, downloaded once into a cache and installed
  into a layer directory (or a directory for the EFS volume), with the size checked
  against Lambda's limit.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from mlambda.spec import FunctionSpec

# Lambda's limit on a function's code and layers, unzipped (250 MB).
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
# python3.12 and newer run on Amazon Linux 2023: glibc 2.34, x86_64.
GLIBC = (2, 34)
RUNTIMES = ("python3.12", "python3.13")
CACHE = Path(os.environ.get("MLAMBDA_WHEEL_CACHE", Path.home() / ".cache" / "mlambda" / "wheels"))
_SAVED = re.compile(r"^\s*(?:Saved|File was already downloaded) (\S+\.whl)\s*$", re.M)
_REQ_LINE = re.compile(r"^\s*([^#\s][^#]*?)\s*(#.*)?$")


class PackageError(Exception):
    """The function's dependencies cannot be packaged; the message says what to do."""


def platforms() -> list[str]:
    """pip's `--platform` values for Lambda: every manylinux tag that glibc 2.34 runs
    (pip does not widen `manylinux2014_x86_64` to the newer `manylinux_2_28` wheels that
    numpy, onnxruntime and Pillow ship now)."""
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(17, GLIBC[1] + 1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def python_version(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise PackageError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    return runtime.removeprefix("python")


# -- what the function imports ---------------------------------------------------------


def _imports(source: str, filename: str) -> set[str]:
    """Absolute module names a Python file imports (anywhere in it)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            # `from mlambda import volume` imports the submodule mlambda.volume
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _local_modules(bundle: Path) -> set[str]:
    return {p.stem for p in bundle.glob("*.py")} | {
        p.parent.name for p in bundle.glob("*/__init__.py")}


def bundle_imports(bundle: Path, spec: FunctionSpec) -> set[str]:
    names = set(spec.preload)
    for path in sorted(bundle.rglob("*.py")):
        names |= _imports(path.read_text(encoding="utf-8"), str(path))
    return names


@dataclass(frozen=True)
class Runtime:
    """What the exported function needs besides its own code."""

    requirements: tuple[str, ...]  # pinned, e.g. "numpy==2.4.6"
    mlambda_files: tuple[str, ...]  # paths inside the mlambda package, e.g. "volume.py"

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.requirements).encode()).hexdigest()[:12]


def mlambda_closure(names: set[str]) -> tuple[set[str], set[str]]:
    """Follow `mlambda.*` imports through our own package: (the files the function needs,
    the other top-level modules those files import)."""
    package = Path(__file__).resolve().parent.parent
    todo = [n for n in names if n == "mlambda" or n.startswith("mlambda.")]
    files = {"__init__.py"} if todo else set()
    outside: set[str] = set()
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")[1:]
        if not parts:
            continue  # `import mlambda`: its __init__.py is always in
        rel = Path(*parts)
        for candidate in (rel.with_suffix(".py"), rel / "__init__.py"):
            if (package / candidate).is_file():
                break
        else:
            continue  # `from mlambda.volume import Model`: Model is no module
        files.add(candidate.as_posix())
        for parent in candidate.parents:  # the packages above it
            if parent.parts:
                files.add((parent / "__init__.py").as_posix())
        for imported in _imports((package / candidate).read_text(), str(candidate)):
            if imported == "mlambda" or imported.startswith("mlambda."):
                todo.append(imported)
            else:
                outside.add(imported)
    return files, outside


def _pins() -> dict[str, str]:
    """mlambda's own pins (its dependencies and extras), by canonical name."""
    pins: dict[str, str] = {}
    for line in importlib.metadata.requires("mlambda") or []:
        req = Requirement(line)
        if str(req.specifier).startswith("=="):
            pins.setdefault(canonicalize_name(req.name), str(req.specifier))
    return pins


def _distribution_of(module: str) -> str | None:
    top = module.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top)
    if dists:
        return dists[0]
    return None


def runtime_of(bundle: Path, spec: FunctionSpec) -> Runtime:
    """The function's requirements and the part of mlambda it imports. A module that no
    installed distribution provides must be named in the bundle's `requirements.txt`."""
    imports = bundle_imports(bundle, spec)
    files, outside = mlambda_closure(imports)
    local = _local_modules(bundle)
    stdlib = set(sys.stdlib_module_names)
    tops = {n.split(".")[0] for n in imports | outside} - local - stdlib - {"mlambda", "__future__"}
    given: dict[str, str] = {}
    req_file = bundle / "requirements.txt"
    if req_file.is_file():
        for raw in req_file.read_text().splitlines():
            m = _REQ_LINE.match(raw)
            if m and not m.group(1).startswith("-"):
                req = Requirement(m.group(1))
                given[canonicalize_name(req.name)] = str(req)
    pins = _pins()
    found: dict[str, str] = {}
    unknown: list[str] = []
    for top in sorted(tops):
        dist = _distribution_of(top)
        if dist is None:
            unknown.append(top)
            continue
        key = canonicalize_name(dist)
        if key in given:
            continue
        spec_ = pins.get(key) or f"=={importlib.metadata.version(dist)}"
        found[key] = f"{key}{spec_}"
    unknown = [u for u in unknown if canonicalize_name(u) not in given]
    if unknown:
        raise PackageError(
            f"cannot tell which package provides {', '.join(unknown)} (imported by the "
            f"function): name it in a requirements.txt in the function's bundle")
    reqs = tuple(sorted({**found, **given}.values()))
    return Runtime(reqs, tuple(sorted(files)))


# -- wheels ---------------------------------------------------------------------------


def wheel_problems(wheels: list[Path], runtime: str) -> list[str]:
    """Each wheel that Lambda's runtime (CPython of that version, x86_64, glibc 2.34)
    could not load, with why."""
    py = "cp" + python_version(runtime).replace(".", "")
    problems: list[str] = []
    for wheel in wheels:
        _, _, _, tags = parse_wheel_filename(wheel.name)
        if not any(_fits(tag.interpreter, tag.abi, tag.platform, py) for tag in tags):
            problems.append(f"{wheel.name}: tags {sorted(map(str, tags))} do not fit "
                            f"{py} on manylinux x86_64 (glibc {GLIBC[0]}.{GLIBC[1]})")
    return problems


def _fits(interpreter: str, abi: str, platform: str, py: str) -> bool:
    if interpreter not in (py, "py3", "cp3") and not (
            abi == "abi3" and interpreter.startswith("cp3")
            and int(interpreter[3:] or 0) <= int(py[3:])):
        return False
    if abi not in (py, "abi3", "none"):
        return False
    if platform == "any":
        return True
    legacy = {"manylinux1_x86_64": (2, 5), "manylinux2010_x86_64": (2, 12),
              "manylinux2014_x86_64": (2, 17)}
    if platform in legacy:
        return legacy[platform] <= GLIBC
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
    return m is not None and (int(m.group(1)), int(m.group(2))) <= GLIBC


def _cache_key(requirements: tuple[str, ...], runtime: str) -> str:
    doc = json.dumps({"requirements": requirements, "runtime": runtime,
                      "platforms": platforms()}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def download(requirements: tuple[str, ...], runtime: str, cache: Path = CACHE) -> list[Path]:
    """The wheels (requirements and everything they depend on) for the runtime, from the
    cache if a previous run downloaded this exact set, else with `pip download`."""
    if not requirements:
        return []
    wheels_dir = cache / runtime
    wheels_dir.mkdir(parents=True, exist_ok=True)
    manifest = cache / f"{runtime}-{_cache_key(requirements, runtime)}.json"
    if manifest.is_file():
        names = json.loads(manifest.read_text())
        paths = [wheels_dir / n for n in names]
        if all(p.is_file() for p in paths):
            return paths
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
           "--progress-bar", "off", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", python_version(runtime), "--dest", str(wheels_dir)]
    for platform in platforms():
        cmd += ["--platform", platform]
    result = subprocess.run([*cmd, *requirements], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR")]
        raise PackageError(f"pip could not download Linux x86_64 wheels for {runtime}: "
                           + ("; ".join(errors) or result.stderr.strip()[-2000:]))
    # pip names each wheel of the resolved set: "Saved <path>" or "File was already
    # downloaded <path>" (pip download has no machine-readable report)
    names = sorted({Path(m.group(1)).name for m in _SAVED.finditer(result.stdout)})
    if not names:
        raise PackageError(f"pip downloaded nothing for {', '.join(requirements)}:\n"
                           f"{result.stdout[-2000:]}")
    tmp = manifest.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(names))
    os.replace(tmp, manifest)
    return [wheels_dir / n for n in names]


def install(wheels: list[Path], runtime: str, target: Path, cache: Path = CACHE) -> None:
    """Install the wheels (no index, no dependencies: they are all here) into `target`,
    laid out as Lambda reads a layer's `python/` directory. The installed tree is kept in
    the cache too, and linked (or copied) from there the next time."""
    if not wheels:
        target.mkdir(parents=True, exist_ok=True)
        return
    key = hashlib.sha256("\n".join(sorted(w.name for w in wheels)).encode()).hexdigest()[:16]
    installed = cache / "installed" / f"{runtime}-{key}"
    if not installed.is_dir():
        tmp = installed.with_name(f".{installed.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-index", "--no-deps", "--no-compile", "--only-binary=:all:",
               "--implementation", "cp", "--python-version", python_version(runtime),
               "--target", str(tmp)]
        for platform in platforms():
            cmd += ["--platform", platform]
        result = subprocess.run([*cmd, *map(str, wheels)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PackageError(f"pip could not install the wheels: "
                               f"{result.stderr.strip()[-2000:]}")
        try:
            os.rename(tmp, installed)
        except OSError:  # another export installed the same set meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(installed, target, symlinks=True, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
