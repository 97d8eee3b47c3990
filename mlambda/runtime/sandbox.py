"""The sandbox a function's code runs in: a user of its own, a clean environment, rlimits.

When the gateway runs as root, each template leases a uid of its own from a range
(`sandbox_uid` + 1 ..., one lock file per uid, so that two gateways on one machine never
share one) and drops to it, with the range's first id as its only group, right after it
has connected to the runtime socket and before it imports anything of the function:
`preload` may name the bundle's own modules. Every instance forked from the template
inherits that uid, the group, the environment and the limits. The data directory lets
that group read bundles and the volume, and nothing else: the keys (0600) and the
registry (0600) stay root's. A uid's processes can signal only each other, and
RLIMIT_NPROC counts per uid, so a function can neither kill another one nor exhaust its
process table. When a template stops, every process left with its uid is killed.

Not root: the user cannot change, so instances run as the gateway's user (and could read
its files); the environment and the other limits still apply, and RLIMIT_NPROC is left
alone, since it would count every process of that user.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import signal
import struct
import sys
import time
from pathlib import Path

import msgspec

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
UID_RANGE = 1000
LEASE_DIRS = (Path("/run/mlambda-sandbox"), Path("/tmp/mlambda-sandbox-0"))
# What the template is spawned with from the gateway's environment: how to run Python,
# never the platform's settings or secrets.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")


class SandboxError(Exception):
    pass


class Limits(msgspec.Struct, frozen=True):
    """What a template (and every process below it) gets: the ids to drop to when the
    gateway is root (None: stay), and its rlimits."""

    gid: int | None
    uid_base: int | None
    lease_dir: str
    max_open_files: int
    max_processes: int
    max_file_bytes: int


def is_root() -> bool:
    return os.geteuid() == 0


def spawn_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment a template starts with: how to run Python, and `extra`."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
    env.update(extra)
    return env


def function_env(bundle: str) -> dict[str, str]:
    """What every function sees besides its own `env` (AWS's names where they exist)."""
    return {"HOME": "/tmp", "TMPDIR": "/tmp", "LAMBDA_TASK_ROOT": bundle,
            "PYTHONDONTWRITEBYTECODE": "1"}


# -- in the template: enter the sandbox ---------------------------------------------


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def lease_uid(limits: Limits) -> tuple[int, int]:
    """Lock the first free uid of the range; returns (uid, lock fd). The lock is held as
    long as any process of the sandbox keeps the descriptor (all of them inherit it)."""
    assert limits.uid_base is not None
    lease_dir = Path(limits.lease_dir)
    for uid in range(limits.uid_base + 1, limits.uid_base + UID_RANGE):
        fd = os.open(lease_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        kill_user(uid)  # whatever a crashed sandbox of this uid left behind
        return uid, fd
    raise SandboxError(f"all {UID_RANGE - 1} sandbox uids from {limits.uid_base + 1} are in use")


def enter(limits: Limits, gateway_pid: int, workdir: str) -> int | None:
    """Drop to a leased uid (when root), set the rlimits, and move to `workdir`.
    Returns the uid dropped to, or None when not root."""
    uid: int | None = None
    if limits.gid is not None and is_root():
        uid, _lock = lease_uid(limits)
        os.setgroups([limits.gid])
        os.setresgid(limits.gid, limits.gid, limits.gid)
        os.setresuid(uid, uid, uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise SandboxError(f"could not switch to uid {uid}")
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise SandboxError("the sandbox could switch back to root")
        # a change of credentials clears the parent-death signal: set it again
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != gateway_pid:
            os._exit(1)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary can give privileges back
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of instances come back to the template
    set_limits(limits, uid is not None)
    os.umask(0o077)
    os.chdir(workdir)
    return uid


def set_limits(limits: Limits, own_uid: bool) -> None:
    def cap(which: int, value: int) -> None:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, limits.max_open_files)
    cap(resource.RLIMIT_FSIZE, limits.max_file_bytes)
    if own_uid:
        cap(resource.RLIMIT_NPROC, limits.max_processes)
    # a write past the file-size limit fails with EFBIG instead of killing the process
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# -- processes of a sandbox ------------------------------------------------------------


def user_pids(uid: int) -> list[int]:
    """Every live process whose real uid is `uid` (from /proc/<pid>/status); zombies are
    dead already and only wait for their parent."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"State:") and line.split()[1] in (b"Z", b"X"):
                        break
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return pids


def kill_user(uid: int, rounds: int = 100) -> None:
    """SIGKILL every process of a sandbox uid (never root's), until none is left."""
    if uid <= 0:
        raise ValueError(f"refusing to kill the processes of uid {uid}")
    for _ in range(rounds):
        pids = [pid for pid in user_pids(uid) if pid != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


def stray_children(known: set[int]) -> list[int]:
    """Children of this process that are not in `known` (orphans it adopted as subreaper)."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split() if int(c) not in known]
    except FileNotFoundError:
        return []


# -- in the gateway: the data directory and what instances must reach --------------------


def lease_dir() -> str:
    """A root-only directory for the uid lease files (created when missing)."""
    for d in LEASE_DIRS:
        try:
            d.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(d)
        except OSError:
            continue
        if st.st_uid == 0 and not os.path.islink(d) and st.st_mode & 0o077 == 0:
            return str(d)
    raise SandboxError("no private directory for sandbox uid leases in /run or /tmp")


def prepare(gid: int, data: Path, needed: list[Path]) -> list[str]:
    """As root: make the data directory readable by the sandbox group but for the keys and
    the registry, and make sure the group can reach every directory in `needed` (the
    Python installation, the data directory). Returns what it changed, to be logged."""
    changed: list[str] = []
    tops = (data, data / "bundles", data / "volume")
    for d in tops:
        d.mkdir(parents=True, exist_ok=True)
    for tree in [*(data / "bundles").iterdir(), data / "volume"]:
        share_tree(tree)
    for d in tops:
        os.chown(d, 0, gid)
        d.chmod(0o750)
    for secret in [*data.glob("*.key"), *data.glob("registry.db*")]:
        secret.chmod(0o600)
    for path in needed:
        for ancestor in [*reversed(path.resolve().parents), path.resolve()]:
            if grant_traverse(ancestor, gid):
                changed.append(f"granted group {gid} search (x) on {ancestor} by an ACL entry "
                               f"so that sandboxed instances can reach {path}")
    return changed


def share_tree(root: Path) -> None:
    """Readable (not writable) by all who can reach it: directories 0755, files 0644
    (0755 when executable). What reaches it is decided above: the data directory is
    0750 root:<sandbox group>."""
    if root.is_symlink() or not root.exists():
        return
    if root.is_file():
        root.chmod(0o755 if root.stat().st_mode & 0o100 else 0o644)
        return
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)


ACL_XATTR = "system.posix_acl_access"
ACL_VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
UNDEFINED = 0xFFFFFFFF
ENTRY = struct.Struct("<HHI")


def grant_traverse(path: Path, gid: int) -> bool:
    """Let group `gid` search (x) a directory it cannot search yet: by the mode when it is
    the directory's group, else by one entry in its POSIX ACL (no other access changes)."""
    st = os.stat(path)
    if st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010):
        return False
    try:
        raw = os.getxattr(path, ACL_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
            raise
        raw = b""
    entries: dict[tuple[int, int], int] = {}
    if raw:
        for i in range(4, len(raw), ENTRY.size):
            tag, perm, ident = ENTRY.unpack_from(raw, i)
            entries[(tag, ident)] = perm
    else:
        mode = st.st_mode
        entries = {(USER_OBJ, UNDEFINED): (mode >> 6) & 7, (GROUP_OBJ, UNDEFINED): (mode >> 3) & 7,
                   (OTHER, UNDEFINED): mode & 7}
    if entries.get((GROUP, gid), 0) & 1 and entries.get((MASK, UNDEFINED), 7) & 1:
        return False
    entries[(GROUP, gid)] = entries.get((GROUP, gid), 0) | 1
    entries[(MASK, UNDEFINED)] = 0
    mask = 0
    for (tag, _), perm in entries.items():
        if tag in (USER, GROUP_OBJ, GROUP):
            mask |= perm
    entries[(MASK, UNDEFINED)] = mask
    blob = struct.pack("<I", ACL_VERSION) + b"".join(
        ENTRY.pack(tag, perm, ident) for (tag, ident), perm in sorted(entries.items()))
    try:
        os.setxattr(path, ACL_XATTR, blob)
    except OSError as exc:
        raise SandboxError(
            f"sandboxed instances (group {gid}) cannot reach {path}, and an ACL entry "
            f"could not be set ({exc.strerror}): make it searchable, e.g. chmod o+x {path}"
        ) from None
    return True


def python_paths() -> list[Path]:
    """What an instance imports from: the interpreter's prefixes and mlambda itself."""
    import mlambda

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(mlambda.__file__).parent.parent,
             Path(os.path.realpath(sys.executable)).parent}
    return sorted(paths)
