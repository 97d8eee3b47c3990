import ctypes
import os
import signal
import time
from typing import Any


class BadThing(Exception):
    pass


def handler(event: Any, context: Any) -> Any:
    what = event.get("do")
    print(f"faulty: doing {what}")
    if what == "raise":
        raise BadThing("the handler raised on purpose")
    if what == "exit":
        os._exit(7)
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "segv":
        ctypes.string_at(0)
    if what == "hang":
        time.sleep(3600)
    if what == "hog":
        hog = bytearray(600 * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        time.sleep(10)
    if what == "spike":  # allocates past the limit and returns at once
        spike = bytearray(600 * 1024 * 1024)
        for i in range(0, len(spike), 4096):
            spike[i] = 1
        del spike
    if what == "unserialisable":
        return {"value": object()}
    return {"pid": os.getpid()}
