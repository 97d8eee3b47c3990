import os
import time
from typing import Any


def handler(event: Any, context: Any) -> Any:
    what = event.get("do")
    if what in ("hog", "spike"):
        block = bytearray(600 * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        if what == "hog":  # holds it: only the memory watchdog ends this call in time
            time.sleep(15)
        del block
    return {"pid": os.getpid()}
