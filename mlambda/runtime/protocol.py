"""The messages between the gateway process, templates (zygotes) and instances.

Every connection is a Unix stream socket to the gateway's runtime socket; a frame is
a 4-byte big-endian length and a MessagePack-encoded frozen struct. The first frame
a process sends is `Hello`, which says who it is.
"""

from __future__ import annotations

import struct

import msgspec

from mlambda.errors import ErrorInfo
from mlambda.runtime.sandbox import Limits
from mlambda.spec import FunctionSpec

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


class Msg(msgspec.Struct, frozen=True, tag=True, array_like=True):
    pass


# -- any process -> gateway -------------------------------------------------------


class Hello(Msg, frozen=True):
    role: str  # "template" | "instance"
    ident: str  # template token or instance id
    pid: int


# -- template <-> gateway ---------------------------------------------------------


class TemplateReady(Msg, frozen=True):
    preload_ms: float


class TemplateFailed(Msg, frozen=True):
    error: ErrorInfo


class Fork(Msg, frozen=True):
    instance_id: str


class Forked(Msg, frozen=True):
    instance_id: str
    pid: int


class Exited(Msg, frozen=True):
    """An instance the template forked has been reaped."""

    pid: int
    exit_code: int | None
    signal: int | None


# -- instance <-> gateway ---------------------------------------------------------


class Ready(Msg, frozen=True):
    init_ms: float


class InitFailed(Msg, frozen=True):
    error: ErrorInfo


class ProxyMeta(msgspec.Struct, frozen=True, array_like=True):
    """What an API-Gateway proxy event needs besides the body; sent only to proxy functions."""

    method: str
    path: str
    resource: str
    query: str
    headers: tuple[tuple[str, str], ...]
    source_ip: str
    api_key_id: str
    stage: str


class Item(msgspec.Struct, frozen=True, array_like=True):
    request_id: str
    payload: bytes
    meta: ProxyMeta | None = None
    # set on a chained call (see chaining.py): the trace it belongs to ("": this
    # invocation starts one, its request id is the trace id), how many calls deep it is,
    # and the caller's deadline (monotonic; 0: none) that bounds the callee's
    trace_id: str = ""
    depth: int = 0
    deadline: float = 0.0


class Batch(Msg, frozen=True):
    batch_id: int
    items: tuple[Item, ...]
    timeout_ms: int


class Stop(Msg, frozen=True):
    pass


class Result(Msg, frozen=True):
    """One invocation's outcome. `body` is the JSON result (or the proxy body)."""

    batch_id: int
    index: int
    body: bytes
    error: ErrorInfo | None
    status: int  # HTTP status for proxy responses; 200 otherwise
    headers: tuple[tuple[str, str], ...]
    duration_ms: float
    max_memory_mb: int
    logs: str
    batch_size: int


class Invoke(Msg, frozen=True):
    """A handler calls another function (`context.invoke`/`invoke_many`): one event per
    payload, answered by one `Invoked` once every one of them has finished."""

    call_id: int
    function: str
    qualifier: str | None
    payloads: tuple[bytes, ...]
    trace_ids: tuple[str, ...]  # one per payload: the trace each callee joins
    asynchronous: bool  # invocation_type="Event": answered as soon as it is queued
    depth: int  # the caller's depth; the callees run at depth + 1
    deadline: float  # the caller's deadline (monotonic): bounds the callees' time


class CallResult(msgspec.Struct, frozen=True, array_like=True):
    body: bytes
    error: ErrorInfo | None
    request_id: str
    version: str


class Invoked(Msg, frozen=True):
    call_id: int
    results: tuple[CallResult, ...]


class ModelLoaded(Msg, frozen=True):
    """An instance loaded (or failed to load) a version of a volume model."""

    name: str
    sha256: str
    error: str | None


Message = (
    Hello | TemplateReady | TemplateFailed | Fork | Forked | Exited | Ready | InitFailed
    | Batch | Stop | Result | ModelLoaded | Invoke | Invoked
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(msg: Msg) -> bytes:
    body = _encoder.encode(msg)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into decoded messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        pos = 0
        with memoryview(buf) as view:
            while len(buf) - pos >= HEADER.size:
                (size,) = HEADER.unpack_from(buf, pos)
                if size > MAX_FRAME:
                    raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
                end = pos + HEADER.size + size
                if len(buf) < end:
                    break
                out.append(_decoder.decode(view[pos + HEADER.size : end]))
                pos = end
        if pos:
            del buf[:pos]
        return out


class TemplateConfig(msgspec.Struct, frozen=True):
    """Everything a template (and the instances it forks) needs; passed in its environment."""

    function_name: str
    function_version: str
    bundle: str
    spec: FunctionSpec
    socket_path: str
    token: str
    gateway_pid: int
    volume: str
    limits: Limits | None = None  # the sandbox (None: run as the gateway runs)


CONFIG_ENV = "MLAMBDA_TEMPLATE_CONFIG"


def encode_config(config: TemplateConfig) -> str:
    return msgspec.json.encode(config).decode()


def decode_config(text: str) -> TemplateConfig:
    return msgspec.json.decode(text, type=TemplateConfig)
