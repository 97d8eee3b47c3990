"""The Lambda Invoke API: `POST /2015-03-31/functions/{name}/invocations`, as boto3 and
the AWS CLI call it. Function errors are 200 with `X-Amz-Function-Error: Unhandled`;
service errors carry their type in `x-amzn-ErrorType`, as AWS's REST-JSON protocol says.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from mlambda.errors import ErrorInfo, InvalidParameter, MlambdaError, TooManyRequests, http_status
from mlambda.gateway.http import Receive, Scope, Send, encode_json, header, read_body, respond
from mlambda.gateway.throttle import NO_HEADERS, Headers
from mlambda.runtime.dispatcher import VersionRef
from mlambda.runtime.protocol import Item
from mlambda.spec import check_name
from mlambda.telemetry.logs import invocation_log

if TYPE_CHECKING:
    from mlambda.gateway.app import Gateway

PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"
ROUTE = "POST /2015-03-31/functions/{FunctionName}/invocations"  # its metrics' route name
TAIL_BYTES = 4096
INVOCATION_TYPES = {b"RequestResponse", b"Event", b"DryRun"}


def parse_target(scope: Scope) -> tuple[str, str | None]:
    """FunctionName may be `name`, `name:qualifier` or an ARN; `?Qualifier=` may add one."""
    raw = unquote(scope["path"][len(PREFIX):-len(SUFFIX)])
    qualifier: str | None = None
    if raw.startswith("arn:"):
        parts = raw.split(":")
        if len(parts) not in (7, 8) or parts[5] != "function":
            raise InvalidParameter(f"FunctionName: not a Lambda function ARN: {raw!r}")
        name, qualifier = parts[6], (parts[7] if len(parts) == 8 else None)
    elif ":" in raw:
        name, _, qualifier = raw.partition(":")
    else:
        name = raw
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "Qualifier" in query:
        q = query["Qualifier"][0]
        if qualifier is not None and q != qualifier:
            raise InvalidParameter(
                f"The derived qualifier from the function name ({qualifier}) does not match "
                f"the specified qualifier ({q})")
        qualifier = q
    check_name("FunctionName", name)
    if qualifier is not None:
        check_name("Qualifier", qualifier, qualifier=True)
    return name, qualifier


def service_error(exc: MlambdaError,
                  limits: Headers = NO_HEADERS) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    info = exc.info()
    body: dict[str, object] = {"errorType": info.error_type, "errorMessage": info.message,
                               "message": info.message, "Type": "User"}
    if isinstance(exc, TooManyRequests):
        body["Reason"] = exc.reason
    headers = [(b"content-type", b"application/json"),
               (b"x-amzn-errortype", info.error_type.encode()), *exc.headers(), *limits]
    return exc.status, encode_json(body), headers


async def invoke_api(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> int:
    """Returns the response's status."""
    limits = NO_HEADERS
    name, qualifier = "", None
    version: VersionRef | None = None
    try:
        key = gateway.authenticate(scope)
        name, qualifier = parse_target(scope)
        limits = gateway.admit(key, name)
        kind = header(scope, b"x-amz-invocation-type") or b"RequestResponse"
        if kind not in INVOCATION_TYPES:
            raise InvalidParameter(
                f"X-Amz-Invocation-Type: expected RequestResponse, Event or DryRun, "
                f"got {kind.decode('latin-1')!r}")
        tail = header(scope, b"x-amz-log-type") == b"Tail"
        body = await read_body(scope, receive, gateway.settings.max_body_bytes)
        version = gateway.router.resolve(name, qualifier)
        if kind == b"DryRun":
            return await respond(send, 204, b"", [
                (b"x-amz-executed-version", version.version.encode()), *limits])
        item = Item(gateway.request_id(), body, None)
        future = gateway.engine.submit(version, item, key.key_id, key.weight)
        if kind == b"Event":
            if gateway.metrics is not None:
                gateway.metrics.on_alias_future(name, qualifier, version.spec.memory_mb,
                                                future)
            return await respond(send, 202, b"", [
                (b"x-amzn-requestid", item.request_id.encode()), *limits])
        outcome = await future
    except MlambdaError as exc:
        if exc.status == 429 and gateway.metrics is not None and name:
            gateway.metrics.throttled(name, qualifier, version.version if version else None,
                                      getattr(exc, "reason", exc.error_type))
        status, payload, headers = service_error(exc, limits)
        return await respond(send, status, payload, headers)
    if gateway.metrics is not None:
        gateway.metrics.on_alias_outcome(name, qualifier, outcome, version.spec.memory_mb)
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-requestid", outcome.request_id.encode()),
        (b"x-amz-executed-version", outcome.version.encode()),
        *limits,
    ]
    if tail:
        log = invocation_log(outcome, version.spec.memory_mb).encode()[-TAIL_BYTES:]
        headers.append((b"x-amz-log-result", base64.b64encode(log)))
    error = outcome.error
    if error is None:
        return await respond(send, 200, outcome.body, headers)
    if error.kind == "function":
        headers.append((b"x-amz-function-error", b"Unhandled"))
        return await respond(send, 200, function_error_body(error), headers)
    headers.append((b"x-amzn-errortype", error.error_type.encode()))
    return await respond(send, http_status(error), encode_json(
        {"errorType": error.error_type, "errorMessage": error.message,
         "message": error.message, "Type": "User"}), headers)


def function_error_body(error: ErrorInfo) -> bytes:
    return encode_json({"errorMessage": error.message, "errorType": error.error_type,
                        "stackTrace": list(error.stack)})
