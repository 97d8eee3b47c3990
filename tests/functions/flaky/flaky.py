import os
from typing import Any


def handler(event: Any, context: Any) -> Any:
    if event.get("always"):  # crashes whatever instance runs it
        os._exit(1)
    marker = event["marker"]
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return {"pid": os.getpid(), "crashed_pid": int(open(marker).read())}
