"""The built-in load generator: asyncio, one coroutine per connection, HTTP/1.1 keep-alive
written by hand (no client library between the socket and the clock). Used when wrk is
not installed, and for bursts (N connections each sending one request at once)."""

from __future__ import annotations

import asyncio
import time

from mlambda.loadtest.bodies import Bodies, check, make_id
from mlambda.loadtest.samples import Samples
from mlambda.loadtest.target import Target


class _Closed(Exception):
    pass


def _head(target: Target, key: str | None, length: int, close: bool) -> bytes:
    lines = [f"{target.method} {target.path} HTTP/1.1", f"Host: {target.host}:{target.port}",
             "Content-Type: application/json", f"Content-Length: {length}"]
    if key:
        lines.append(f"x-api-key: {key}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes, bool]:
    """Send one request, read one response: (status, body, function error header)."""
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise _Closed()
    status = int(status_line.split()[1])
    length = 0
    chunked = function_error = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"x-amz-function-error":
            function_error = True
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, (await reader.readexactly(length) if length else b""), function_error
    parts = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after the chunk
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
        pass
    return status, b"".join(parts), function_error


async def _connection(target: Target, key: str | None, bodies: Bodies, samples: Samples,
                      counter: list[int], stop_at: float, timeout_s: float,
                      served: set[int], index: int) -> None:
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while time.monotonic() < stop_at:
            if stream is None:
                try:
                    stream = await asyncio.wait_for(
                        asyncio.open_connection(target.host, target.port), timeout_s)
                except (OSError, TimeoutError):
                    samples.error("connect")
                    await asyncio.sleep(0.1)
                    continue
            reader, writer = stream
            n = counter[0]
            counter[0] += 1
            sent = time.monotonic()
            sent_us = int(sent * 1_000_000)
            body = bodies.body(n, sent_us)
            request = _head(target, key, len(body), False) + body
            try:
                status, answer, ferr = await asyncio.wait_for(
                    _exchange(reader, writer, request), timeout_s)
            except TimeoutError:
                samples.error("timeout")
                writer.close()
                stream = None
                continue
            except (OSError, _Closed, ValueError, IndexError, asyncio.IncompleteReadError):
                samples.error("read")
                writer.close()
                stream = None
                continue
            now = time.monotonic()
            samples.add(now, now - sent, check(bodies, status, answer,
                                               make_id(bodies.nonce, n, sent_us), ferr))
            served.add(index)
    finally:
        if stream is not None:
            stream[1].close()


async def steady(target: Target, key: str | None, bodies: Bodies, concurrency: int,
                 duration_s: float, timeout_s: float = 10.0) -> Samples:
    """`concurrency` connections, each sending its next request as soon as it has the
    answer to the last, for `duration_s`."""
    start = time.monotonic()
    cpu = time.process_time()
    samples = Samples("native", concurrency, start)
    counter = [0]
    served: set[int] = set()
    stop_at = start + duration_s
    await asyncio.gather(*(
        _connection(target, key, bodies, samples, counter, stop_at, timeout_s, served, i)
        for i in range(concurrency)))
    samples.ended = time.monotonic()
    samples.cpu_s = time.process_time() - cpu
    samples.connections_served = len(served)
    return samples


async def burst(target: Target, key: str | None, bodies: Bodies, n: int,
                timeout_s: float = 30.0) -> Samples:
    """`n` connections opened at once, each sending one request; latency from the start
    of the burst (connection set-up included), as a client of a cold service sees it."""
    start = time.monotonic()
    cpu = time.process_time()
    samples = Samples("native", n, start)

    async def one(i: int) -> None:
        sent_us = int(time.monotonic() * 1_000_000)
        body = bodies.body(i, sent_us)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), timeout_s)
        except (OSError, TimeoutError):
            samples.error("connect")
            return
        try:
            status, answer, ferr = await asyncio.wait_for(
                _exchange(reader, writer, _head(target, key, len(body), True) + body),
                max(0.1, timeout_s - (time.monotonic() - start)))
        except TimeoutError:
            samples.error("timeout")
            return
        except (OSError, _Closed, ValueError, IndexError, asyncio.IncompleteReadError):
            samples.error("read")
            return
        finally:
            writer.close()
        now = time.monotonic()
        samples.add(now, now - start, check(bodies, status, answer,
                                            make_id(bodies.nonce, i, sent_us), ferr))

    await asyncio.gather(*(one(i) for i in range(n)))
    samples.ended = time.monotonic()
    samples.cpu_s = time.process_time() - cpu
    samples.connections_served = len(samples.done)
    return samples
