import os
import time
from typing import Any

SLEEP_S = int(os.environ["SLEEP_MS"]) / 1000


def handler(event: Any, context: Any) -> Any:
    return batch_handler([event], context)[0]


def batch_handler(events: list[Any], context: Any) -> list[Any]:
    time.sleep(SLEEP_S)
    if any(e.get("fail") for e in events):
        raise RuntimeError("asked to fail")
    return events
