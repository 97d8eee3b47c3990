import os
import time
from typing import Any

INIT_PID = os.getpid()


def handler(event: Any, context: Any) -> Any:
    return batch_handler([event], context)[0]


def batch_handler(events: list[Any], context: Any) -> list[Any]:
    time.sleep(max((e.get("sleep", 0) for e in events), default=0))
    return [
        {
            "i": e.get("i"),
            "batch": len(events),
            "pid": os.getpid(),
            "init_pid": INIT_PID,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "context": {
                "aws_request_id": context.aws_request_id,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "invoked_function_arn": context.invoked_function_arn,
            },
            "volume": os.environ.get("MLAMBDA_VOLUME"),
        }
        for e in events
    ]
