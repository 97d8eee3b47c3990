import time
import uuid
from typing import Any


def handler(event: Any, context: Any) -> Any:
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"id": event.get("id"), "payload": event.get("payload"), "nonce": uuid.uuid4().hex}
