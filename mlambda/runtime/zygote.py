"""A version's template process ("zygote"): imports the heavy libraries once, then forks
instances on request, so that a cold start costs a fork plus the handler's own init.

Run as `python -m mlambda.runtime.zygote` with its `TemplateConfig` in the environment.
It holds no threads when it forks (checked before every fork), dies with the gateway
(PR_SET_PDEATHSIG), reaps the instances it forked and reports their exit status.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import NoReturn

from mlambda.errors import RUNTIME_TEMPLATE, function_error
from mlambda.runtime import protocol as p
from mlambda.runtime import sandbox
from mlambda.runtime.instance import Instance

PR_SET_PDEATHSIG = 1
# Libraries that size thread pools at import or first use: one thread per instance,
# since instances run side by side on the machine's cores.
SINGLE_THREADED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies; exit now if the parent is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def set_environment(cfg: p.TemplateConfig) -> None:
    """The environment a function's code sees (Lambda's variables, its `env`, the volume)."""
    for key, value in SINGLE_THREADED.items():
        os.environ.setdefault(key, value)
    os.environ.update(cfg.spec.env)
    os.environ["MLAMBDA_VOLUME"] = cfg.volume
    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = cfg.function_name
    os.environ["AWS_LAMBDA_FUNCTION_VERSION"] = cfg.function_version
    os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(cfg.spec.memory_mb)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


class Template:
    def __init__(self, config: p.TemplateConfig) -> None:
        self.config = config
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.reader = p.FrameReader()
        self.children: set[int] = set()
        self.wake_r, self.wake_w = socket.socketpair()
        self.selector = selectors.DefaultSelector()
        self.uid: int | None = None

    def send(self, msg: p.Msg) -> None:
        self.sock.sendall(p.encode(msg))

    def start(self) -> None:
        cfg = self.config
        self.sock.connect(cfg.socket_path)
        self.send(p.Hello("template", cfg.token, os.getpid()))
        # Nothing of the function has run yet: enter the sandbox before `preload`.
        if cfg.limits is not None:
            try:
                self.uid = sandbox.enter(cfg.limits, cfg.gateway_pid, cfg.bundle)
            except (OSError, sandbox.SandboxError) as exc:
                self.fail(f"could not enter the sandbox: {exc}", ())
        os.environ.update(sandbox.function_env(cfg.bundle))
        set_environment(cfg)
        sys.path.insert(0, cfg.bundle)
        started = time.perf_counter()
        for module in cfg.spec.preload:
            try:
                importlib.import_module(module)
            except Exception as exc:
                self.fail(f"preload of '{module}' failed: {type(exc).__name__}: {exc}",
                          tuple(traceback.format_exception(exc)))
        threads = thread_count()
        if threads != 1:
            self.fail(f"after preload the template holds {threads} threads; a template must "
                      "hold none when it forks (start thread pools in the handler's init)", ())
        self.send(p.TemplateReady((time.perf_counter() - started) * 1000))

    def fail(self, message: str, stack: tuple[str, ...]) -> NoReturn:
        self.send(p.TemplateFailed(function_error(RUNTIME_TEMPLATE, message, stack)))
        os._exit(3)

    def serve(self) -> NoReturn:
        """The one loop: fork on request, report reaped children, stop on EOF or Stop."""
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only wakes the loop
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.wake_r:
                    self.wake_r.recv(4096)
                    self.reap()
                    continue
                try:
                    data = self.sock.recv(1 << 16)
                except ConnectionError:
                    data = b""
                if not data:
                    self.stop()
                for msg in self.reader.feed(data):
                    if isinstance(msg, p.Fork):
                        self.fork(msg.instance_id)
                    elif isinstance(msg, p.Stop):
                        self.stop()

    def reap(self) -> None:
        while True:  # instances, and the orphans of instances we adopted (subreaper)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue  # an orphan of an instance, adopted (subreaper) and killed
            self.children.discard(pid)
            if os.WIFSIGNALED(status):
                self.send(p.Exited(pid, None, os.WTERMSIG(status)))
            else:
                self.send(p.Exited(pid, os.waitstatus_to_exitcode(status), None))
            self.kill_strays()

    def kill_strays(self) -> None:
        """What an instance left running when it ended came back to us: kill it."""
        for pid in sandbox.stray_children(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def fork(self, instance_id: str) -> None:
        if thread_count() != 1:
            self.fail("the template started a thread; it can no longer fork safely", ())
        template_pid = os.getpid()
        gc.freeze()  # the preloaded modules: never walked (nor written to) by the instances
        try:
            pid = os.fork()
        except OSError as exc:  # e.g. the function's processes are at RLIMIT_NPROC
            print(f"mlambda template: cannot fork instance {instance_id}: {exc}",
                  file=sys.stderr, flush=True)
            return
        if pid == 0:
            self.become_instance(instance_id, template_pid)
        self.children.add(pid)
        self.send(p.Forked(instance_id, pid))

    def become_instance(self, instance_id: str, template_pid: int) -> NoReturn:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            for s in (self.sock, self.wake_r, self.wake_w):
                s.close()
            die_with_parent(template_pid)
            Instance(self.config, instance_id).run()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)

    def stop(self) -> NoReturn:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.uid is not None and self.uid != 0 and os.getuid() == self.uid:
            os.kill(-1, signal.SIGKILL)  # every process of the sandbox's own uid, but us
        os._exit(0)


def main() -> NoReturn:
    config = p.decode_config(os.environ.pop(p.CONFIG_ENV))
    die_with_parent(config.gateway_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when we stop
    template = Template(config)
    template.start()
    template.serve()


if __name__ == "__main__":
    main()
