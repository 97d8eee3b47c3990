"""relay: returns what `echo` returns for its event, and how long the call took inside."""

import time
from typing import Any


def handler(event: Any, context: Any) -> Any:
    start = time.perf_counter()
    result = context.invoke("echo", event, qualifier="live")
    return {"result": result, "call_ms": (time.perf_counter() - start) * 1000}
