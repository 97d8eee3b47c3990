"""A small asyncio HTTP/1.1 client for benchmarks that need what wrk cannot give: per-key
latencies measured beside a wrk flood, and requests resent on other connections.

One keep-alive connection per `Connection`; a response is read by Content-Length or
chunked transfer encoding (uvicorn sends chunked when the app gives no length).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted((ROOT / "tests" / "data" / "handwriting").glob("[0-9]*.jpg"))


def image_b64(i: int) -> str:
    return base64.b64encode(IMAGES[i % len(IMAGES)].read_bytes()).decode()


def question(uuid: str, image: str, retry: int = 2) -> bytes:
    return json.dumps({"esun_uuid": uuid, "esun_timestamp": int(time.time()), "image": image,
                       "retry": retry}).encode()


class Connection:
    def __init__(self, host: str, port: int, key: str) -> None:
        self.host = host
        self.port = port
        self.key = key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body); reconnects once if the server closed the connection."""
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                return await self._exchange(path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nx-api-key: {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)
        await self.writer.drain()
        status = int((await self.reader.readuntil(b"\r\n")).split()[1])
        length, chunked, close = 0, False, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readexactly(2)
            content = b"".join(parts)
        else:
            content = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, content

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
