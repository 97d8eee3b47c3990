import os
from typing import Any

import ray


def handler(event: Any, context: Any) -> Any:
    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
