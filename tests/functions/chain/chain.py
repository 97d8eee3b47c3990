import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlambda.runtime.context import FunctionError, InvokeError


def handler(event: Any, context: Any) -> Any:
    op = event["op"]
    target = event.get("target", "callee")
    if op == "call":  # one synchronous call; errors left uncaught
        return {"trace": context.trace_id, "result": context.invoke(target, event.get("event"))}
    if op == "catch":  # one call whose error is caught and described
        try:
            return {"result": context.invoke(target, event.get("event"))}
        except FunctionError as exc:
            return {"caught": "FunctionError", "error_type": exc.error_type,
                    "message": exc.message}
        except InvokeError as exc:
            return {"caught": "InvokeError", "error_type": exc.error_type,
                    "message": exc.message}
    if op == "many":  # n calls at once: the callee gets them as one batch
        events = [{"op": "echo", "i": i} for i in range(event["n"])]
        results = context.invoke_many(target, events, return_exceptions=True)
        return {"trace": context.trace_id,
                "results": [r if isinstance(r, dict) else {"error": r.error_type}
                            for r in results]}
    if op == "threads":  # calls from several threads at once, each waiting for its own
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: context.invoke(target, {"op": "echo", "i": i}),
                                    range(event["n"])))
        return {"results": results}
    if op == "event":  # fire and forget
        start = time.monotonic()
        request_id = context.invoke(target, event.get("event"), invocation_type="Event")
        return {"request_id": request_id, "took_s": time.monotonic() - start}
    if op == "loop":  # calls itself until the chain is stopped
        depth = context.depth
        inner = context.invoke("chain", {"op": "loop"})
        return {"depth": depth, "inner": inner}
    if op == "remaining":
        return {"caller_ms": context.get_remaining_time_in_millis(),
                "callee": context.invoke(target, {"op": "echo"})}
    raise ValueError(f"unknown op {op!r}")
