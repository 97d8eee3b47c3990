import time
from typing import Any


def handler(event: Any, context: Any) -> Any:
    time.sleep(event.get("sleep", 0.5))
    return {"slept": event.get("sleep", 0.5)}
