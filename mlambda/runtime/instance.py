"""An instance: one process that runs a version's handler, one batch at a time.

It starts as a fork of the version's template, connects to the gateway, imports the
handler module (its module-level code is the init phase, as on Lambda) and then
serves batches until told to stop or until the gateway goes away.
"""

from __future__ import annotations

import base64
import importlib
import io
import os
import resource
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec

from mlambda import heap, volume
from mlambda.errors import (
    RUNTIME_BAD_PROXY,
    RUNTIME_HANDLER_NOT_FOUND,
    RUNTIME_IMPORT,
    RUNTIME_MARSHAL,
    RUNTIME_OOM,
    ErrorInfo,
    function_error,
)
from mlambda.runtime import protocol as p
from mlambda.runtime.calls import Calls
from mlambda.runtime.context import InvokeError, LambdaContext

EXIT_INIT_FAILED = 3
EXIT_OOM = 4

Handler = Callable[[Any, LambdaContext], Any]
BatchHandler = Callable[[list[Any], LambdaContext], list[Any]]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class _Capture(io.TextIOBase):
    """sys.stdout/sys.stderr of an instance: what the handler prints, per invocation."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.parts.append(s)
        return len(s)

    def take(self) -> str:
        out = "".join(self.parts)
        self.parts.clear()
        return out


def _max_memory_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _error_from(exc: BaseException) -> ErrorInfo:
    stack = tuple(traceback.format_tb(exc.__traceback__)[1:])
    if isinstance(exc, InvokeError):  # a chained call's error, uncaught: the callee's type
        return function_error(exc.error_type, exc.message, stack)
    return function_error(type(exc).__name__, str(exc), stack)


def _resolve(module: Any, dotted: str) -> Callable[..., Any]:
    name = dotted.rpartition(".")[2]
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LookupError(f"Handler '{name}' missing on module '{dotted.rpartition('.')[0]}'")
    return fn  # type: ignore[no-any-return]


class Instance:
    def __init__(self, config: p.TemplateConfig, instance_id: str) -> None:
        self.config = config
        self.spec = config.spec
        self.instance_id = instance_id
        self.capture = _Capture()
        self.handler: Handler | None = None
        self.batch_handler: BatchHandler | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.reader = p.FrameReader()
        self.backlog: list[p.Message] = []
        self.send_lock = threading.Lock()  # a model may load on a background thread
        self.log_stream = f"{time.strftime('%Y/%m/%d')}/[{config.function_version}]{instance_id}"
        self.pending_logs = ""
        self.calls = Calls(self.send, self.read_frames, self.backlog.append)

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> NoReturn:
        self.sock.connect(self.config.socket_path)
        self.send(p.Hello("instance", self.instance_id, os.getpid()))
        sys.stdout = sys.stderr = self.capture
        volume.set_reporter(self.report_model)
        error = self.init()
        if error is not None:
            self.send(p.InitFailed(error))
            os._exit(EXIT_INIT_FAILED)
        heap.settle()  # the handler's module and what its init loaded (a model) stay
        while True:
            msg = self.receive()
            if msg is None or isinstance(msg, p.Stop):
                os._exit(0)
            if isinstance(msg, p.Batch):
                self.run_batch(msg)

    def init(self) -> ErrorInfo | None:
        start = time.perf_counter()
        os.environ.update(self.spec.env)
        sys.path.insert(0, self.config.bundle)
        try:
            module = importlib.import_module(self.spec.handler_module)
        except Exception as exc:  # the handler's own init failed: report it, distinctly
            tb = tuple(traceback.format_exception(exc))
            self.pending_logs = self.capture.take()
            return function_error(
                RUNTIME_IMPORT,
                f"Unable to import module '{self.spec.handler_module}': "
                f"{type(exc).__name__}: {exc}",
                tb,
            )
        try:
            self.handler = _resolve(module, self.spec.handler)
            if self.spec.batch_handler is not None:
                bmod = importlib.import_module(self.spec.batch_handler.rpartition(".")[0])
                self.batch_handler = _resolve(bmod, self.spec.batch_handler)
        except (LookupError, ImportError) as exc:
            return function_error(RUNTIME_HANDLER_NOT_FOUND, str(exc))
        self.pending_logs = self.capture.take()
        self.send(p.Ready((time.perf_counter() - start) * 1000))
        return None

    # -- wire -------------------------------------------------------------------------

    def send(self, msg: p.Msg) -> None:
        self.send_raw(p.encode(msg))

    def send_raw(self, frames: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(frames)

    def report_model(self, name: str, sha256: str, error: str | None) -> None:
        self.send(p.ModelLoaded(name, sha256, error))

    def receive(self) -> p.Message | None:
        while True:
            if self.backlog:
                return self.backlog.pop(0)
            messages = self.read_frames()
            if messages is None:
                return None
            self.backlog.extend(messages)

    def read_frames(self) -> list[p.Message] | None:
        """One read's worth of messages; None when the gateway closed the connection."""
        data = self.sock.recv(1 << 20)
        return self.reader.feed(data) if data else None

    # -- events -----------------------------------------------------------------------

    def event_of(self, item: p.Item) -> Any:
        """The handler's event: the parsed JSON body, or an API Gateway proxy event."""
        meta = item.meta
        if meta is None:
            return _json_decode(item.payload) if item.payload.strip() else {}
        try:
            body: str | None = item.payload.decode("utf-8") if item.payload else None
            b64 = False
        except UnicodeDecodeError:
            body, b64 = base64.b64encode(item.payload).decode("ascii"), True
        query: dict[str, str] | None = None
        if meta.query:
            from urllib.parse import parse_qsl

            query = dict(parse_qsl(meta.query, keep_blank_values=True))
        return {
            "resource": meta.resource,
            "path": meta.path,
            "httpMethod": meta.method,
            "headers": dict(meta.headers),
            "multiValueHeaders": None,
            "queryStringParameters": query,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "requestId": item.request_id,
                "stage": meta.stage,
                "httpMethod": meta.method,
                "path": meta.path,
                "resourcePath": meta.resource,
                "identity": {"sourceIp": meta.source_ip, "apiKeyId": meta.api_key_id},
            },
            "body": body,
            "isBase64Encoded": b64,
        }

    def result_of(self, value: Any, proxy: bool) -> tuple[bytes, int, tuple[tuple[str, str], ...]]:
        """Encode a handler's return value; raises `_Marshal` when it cannot be sent back."""
        if not proxy:
            try:
                return _json_encode(value), 200, ()
            except (TypeError, msgspec.EncodeError) as exc:
                raise _Marshal(RUNTIME_MARSHAL, f"Unable to marshal response: {exc}") from None
        if not isinstance(value, dict) or not isinstance(value.get("statusCode"), int):
            raise _Marshal(
                RUNTIME_BAD_PROXY,
                "a proxy handler must return {statusCode: int, headers: {}, body: str}; "
                f"got {type(value).__name__}",
            )
        body = value.get("body")
        headers = value.get("headers") or {}
        if body is not None and not isinstance(body, str):
            raise _Marshal(RUNTIME_BAD_PROXY, "proxy response `body` must be a string")
        if not isinstance(headers, dict):
            raise _Marshal(RUNTIME_BAD_PROXY, "proxy response `headers` must be an object")
        raw = (body or "").encode("utf-8")
        if value.get("isBase64Encoded"):
            raw = base64.b64decode(raw)
        pairs = tuple((str(k), str(v)) for k, v in headers.items())
        return raw, value["statusCode"], pairs

    # -- batches ----------------------------------------------------------------------

    def peak_memory_mb(self) -> int:
        """The memory this instance has held at its peak, checked against `memory_mb`."""
        return _max_memory_mb()

    def exit_oom(self) -> None:
        """Over its memory limit: the instance exits (after answering), as on Lambda."""
        os._exit(EXIT_OOM)

    def context(self, items: list[p.Item], timeout_ms: int) -> LambdaContext:
        """The context of one invocation, or of a batch handler's call (its events' items):
        the deadline is the function's timeout, or a chained caller's if that is sooner."""
        deadline = time.monotonic() + timeout_ms / 1000
        for item in items:
            if item.deadline:
                deadline = min(deadline, item.deadline)
        return LambdaContext(
            aws_request_id=items[0].request_id,
            function_name=self.config.function_name,
            function_version=self.config.function_version,
            memory_limit_in_mb=self.spec.memory_mb,
            deadline=deadline,
            log_stream_name=self.log_stream,
            trace_ids=[item.trace_id or item.request_id for item in items],
            depth=max(item.depth for item in items),
            calls=self.calls,
        )

    def run_batch(self, batch: p.Batch) -> None:
        n = len(batch.items)
        events: list[Any] = []
        bad: dict[int, ErrorInfo] = {}
        for i, item in enumerate(batch.items):
            try:
                events.append(self.event_of(item))
            except msgspec.DecodeError as exc:
                events.append(None)
                bad[i] = ErrorInfo(
                    "InvalidRequestContentException",
                    f"Could not parse request body into json: {exc}",
                    (),
                    "request",
                )
        if self.batch_handler is not None and len(bad) < n:
            self.run_batch_handler(batch, events, bad)
        else:
            for i in range(n):
                self.run_one(batch, i, events[i], bad.get(i))

    def finish(self, batch: p.Batch, index: int, value: Any, error: ErrorInfo | None,
               started: float, logs: str, mem: int | None = None) -> p.Result:
        """One invocation's `Result`; `mem`: the peak memory, if just read for the batch."""
        body, status = b"", 200
        headers: tuple[tuple[str, str], ...] = ()
        if error is None:
            try:
                body, status, headers = self.result_of(value, self.spec.event == "proxy")
            except _Marshal as exc:
                error = function_error(exc.error_type, exc.message)
        if mem is None:
            mem = self.peak_memory_mb()
        if mem > self.spec.memory_mb:
            error = function_error(
                RUNTIME_OOM,
                f"Runtime exited with error: memory {mem} MB exceeds the limit of "
                f"{self.spec.memory_mb} MB",
            )
        if self.pending_logs:
            logs, self.pending_logs = self.pending_logs + logs, ""
        return p.Result(
            batch.batch_id, index, body, error, status, headers,
            (time.perf_counter() - started) * 1000, mem, logs, len(batch.items),
        )

    def run_one(self, batch: p.Batch, i: int, event: Any, error: ErrorInfo | None) -> None:
        item = batch.items[i]
        started = time.perf_counter()
        value: Any = None
        if error is None:
            assert self.handler is not None
            try:
                value = self.handler(event, self.context([item], batch.timeout_ms))
            except Exception as exc:
                error = _error_from(exc)
        result = self.finish(batch, i, value, error, started, self.capture.take())
        self.send(result)
        if result.error is not None and result.error.error_type == RUNTIME_OOM:
            self.exit_oom()

    def run_batch_handler(self, batch: p.Batch, events: list[Any],
                          bad: dict[int, ErrorInfo]) -> None:
        """One call for the whole batch; if it raises, each event runs alone so that a
        bad item fails only itself."""
        assert self.batch_handler is not None
        good = [i for i in range(len(events)) if i not in bad]
        started = time.perf_counter()
        ctx = self.context([batch.items[i] for i in good], batch.timeout_ms)
        try:
            values = self.batch_handler([events[i] for i in good], ctx)
            if not isinstance(values, list) or len(values) != len(good):
                raise _Marshal(
                    RUNTIME_MARSHAL,
                    f"batch_handler must return a list of {len(good)} results, "
                    f"got {type(values).__name__}",
                )
        except Exception:
            for i in range(len(events)):
                self.run_one(batch, i, events[i], bad.get(i))
            return
        logs = self.capture.take()
        out: list[bytes] = []
        by_index = dict(zip(good, values, strict=True))
        oom = False
        mem = self.peak_memory_mb()  # one reading for the batch: it ran as one call
        for i in range(len(events)):
            value = by_index.get(i)
            error = bad.get(i)
            if error is None and isinstance(value, BaseException):
                error, value = _error_from(value), None
            result = self.finish(batch, i, value, error, started, logs if i == good[0] else "",
                                 mem)
            oom = oom or (result.error is not None and result.error.error_type == RUNTIME_OOM)
            out.append(p.encode(result))
        self.send_raw(b"".join(out))
        if oom:
            self.exit_oom()


class _Marshal(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
