"""The `context` object a handler receives, as on AWS Lambda's Python runtime."""

from __future__ import annotations

import time
from typing import Any

REGION = "local"
ACCOUNT = "000000000000"


def function_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


class LambdaContext:
    """Per invocation (or per batch, for a batch handler). The deadline is monotonic."""

    def __init__(
        self,
        *,
        aws_request_id: str,
        function_name: str,
        function_version: str,
        memory_limit_in_mb: int,
        deadline: float,
        log_stream_name: str,
        identity: Any = None,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = function_arn(function_name, function_version)
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self.identity = identity
        self.client_context: Any = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return (
            f"LambdaContext(function_name={self.function_name!r}, "
            f"function_version={self.function_version!r}, aws_request_id={self.aws_request_id!r})"
        )
