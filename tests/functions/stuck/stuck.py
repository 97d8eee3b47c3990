import os
import time
from pathlib import Path
from typing import Any


def handler(event: Any, context: Any) -> Any:
    if "hang" in event:  # {"hang": dir}: say so in dir/hanging, then hang
        (Path(event["hang"]) / "hanging").touch()
        time.sleep(3600)
    return {"pid": os.getpid()}
