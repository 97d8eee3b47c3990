import time
from typing import Any

served = 0  # this instance's invocations so far: the order they ran in


def handler(event: Any, context: Any) -> Any:
    global served
    time.sleep(event.get("sleep", 0.05))
    served += 1
    return {"who": event.get("who"), "seq": served}
