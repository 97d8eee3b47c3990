"""An exported function run the way AWS Lambda runs it, for the export's tests.

AWS's own runtime interface client (`awslambdaric`, the code that calls handlers in AWS's
python3.12 runtime) runs in the runtime's Python (`python3.12 -I -S`: only what the export
packaged, and the runtime client, can be imported), with sys.path ordered as Lambda orders
it (/var/task = the export's `src/`, then the layer's `python/`, then the runtime). It
fetches events from the Lambda Runtime API, which this module serves on a loopback port
(AWS's Runtime Interface Emulator does the same, but is a binary we cannot fetch):

    GET  /2018-06-01/runtime/invocation/next          -> the next event, with its headers
    POST /2018-06-01/runtime/invocation/{id}/response -> the handler's result
    POST /2018-06-01/runtime/invocation/{id}/error    -> the handler's error
    POST /2018-06-01/runtime/init/error               -> the init phase failed
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from mlambda.export import package

RUNTIME_CLIENT = "awslambdaric==4.2.2"  # the runtime client of AWS's Python base images
PREFIX = "/2018-06-01/runtime"


def runtime_client(runtime: str = "python3.12") -> Path:
    """awslambdaric installed for the runtime's Python, from the export's wheel cache."""
    wheels = package.download((RUNTIME_CLIENT,), runtime)
    target = package.CACHE / "runtime-client" / runtime
    if not target.is_dir():
        tmp = target.with_name(f".{target.name}-{os.getpid()}")
        package.install(wheels, runtime, tmp)
        os.rename(tmp, target)
    return target


class RuntimeApi:
    """The Lambda Runtime API for one execution environment."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, queue.Queue[tuple[str, Any]]] = {}
        self.init_error: Any = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self.send_error(404)
                    return
                request_id, body = api.events.get()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms",
                                 str(int(time.time() * 1000) + 30_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-1:123456789012:function:exported:live")
                self.send_header("Lambda-Runtime-Trace-Id",
                                 "Root=1-674a1b2c-3d4e5f60718293a4b5c6d7e8;Sampled=0")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = json.loads(body or b"null")
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in (
                        "response", "error"):
                    api.results[parts[1]].put((parts[2], json.loads(body or b"null")))
                else:
                    self.send_error(404)
                    return
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def invoke(self, event: Any, alive: Callable[[], bool],
               timeout: float = 60) -> tuple[str, Any]:
        """("response", result) or ("error", {errorMessage, errorType, stackTrace});
        fails at once if the environment died (e.g. its init failed)."""
        request_id = str(uuid.uuid4())
        answer: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.results[request_id] = answer
        self.events.put((request_id, json.dumps(event).encode()))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    return answer.get(timeout=0.2)
                except queue.Empty:
                    if not alive():
                        raise AssertionError(
                            f"the execution environment exited; init error: "
                            f"{self.init_error}") from None
            raise AssertionError(f"no answer in {timeout} s")
        finally:
            del self.results[request_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LambdaFunction:
    """One execution environment of an exported function: started (init) once, invoked
    any number of times, as Lambda does."""

    def __init__(self, python: str, out: Path, env: dict[str, str], layer: bool = True) -> None:
        template = yaml.safe_load((out / "template.yaml").read_text())
        props = template["Resources"]["Function"]["Properties"]
        self.api = RuntimeApi()
        paths = [str(out / "src")]
        if layer:
            paths.append(str(out / "layer" / "python"))
        paths.append(str(runtime_client(props["Runtime"])))
        boot = (f"import sys; sys.path[:0] = {paths!r}; "
                "from awslambdaric.__main__ import main; main(sys.argv)")
        self.proc = subprocess.Popen(
            [python, "-I", "-S", "-c", boot, props["Handler"]],
            cwd=out / "src", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": str(out / "src"),
                 "AWS_LAMBDA_RUNTIME_API": self.api.address,
                 "AWS_LAMBDA_FUNCTION_NAME": "exported", "AWS_LAMBDA_FUNCTION_VERSION": "1",
                 "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props["MemorySize"]),
                 "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/exported",
                 "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/29/[1]0123456789abcdef",
                 "AWS_REGION": "us-east-1", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
                 **props["Environment"]["Variables"], **env})

    def call(self, event: Any) -> Any:
        kind, value = self.api.invoke(event, lambda: self.proc.poll() is None)
        assert kind == "response", value
        return value

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.api.close()
