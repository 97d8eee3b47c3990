"""Calls an exported function the way AWS Lambda's Python runtime does, for the export's
tests. Run by the runtime's Python version (e.g. python3.12) with `-I -S`, so that only
what the export packaged can be imported:

    python3.12 -I -S tests/lambda_runtime.py TASK_ROOT LAYER_DIR|- HANDLER < events

TASK_ROOT is the function's code (`src/`, Lambda's /var/task) and LAYER_DIR a layer's
contents (its `python/` directory goes on sys.path, as /opt/python does on Lambda).
The handler module is imported once (the init phase), then `handler(event, context)` is
called for each event, one JSON line in on stdin, one JSON line out on stdout:
{"result": ...} or {"error": ...}.
"""

import importlib
import json
import os
import sys
import time
import traceback
import uuid


class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    def __init__(self, timeout_s: float) -> None:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "exported")
        self.function_name = name
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "1")
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}:live"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "2026/11/29/[1]0123456789abcdef"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    task_root, layer, handler_name = sys.argv[1:4]
    sys.path.insert(0, task_root)
    if layer != "-":
        sys.path.insert(1, os.path.join(layer, "python"))
    os.chdir(task_root)
    module_name, _, function_name = handler_name.rpartition(".")
    handler = getattr(importlib.import_module(module_name), function_name)
    for line in sys.stdin:
        event = json.loads(line)
        try:
            out = {"result": handler(event, LambdaContext(30.0))}
        except Exception as exc:
            out = {"error": type(exc).__name__, "message": str(exc),
                   "trace": traceback.format_exc()}
        print(json.dumps(out, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
