from typing import Any


def handler(event: Any, context: Any) -> Any:
    return batch_handler([event], context)[0]


def batch_handler(events: list[Any], context: Any) -> list[Any]:
    if any(e.get("op") == "raise" for e in events):
        raise KeyError("callee raised on purpose")
    return [{"i": e.get("i"), "trace": trace, "batch": len(events), "depth": context.depth,
             "remaining_ms": context.get_remaining_time_in_millis()}
            for e, trace in zip(events, context.trace_ids, strict=True)]
