import json
from typing import Any


def handler(event: Any, context: Any) -> Any:
    if event["httpMethod"] == "GET":
        return {"statusCode": 200, "headers": {"x-seen": "get"},
                "body": json.dumps({"query": event["queryStringParameters"]})}
    try:
        body = json.loads(event["body"] or "")
    except ValueError:
        return {"statusCode": 400, "body": json.dumps({"error": "body is not JSON"})}
    if body.get("shape") == "wrong":
        return ["not", "a", "proxy", "response"]
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json",
                    "x-request-id": event["requestContext"]["requestId"]},
        "body": json.dumps({"echo": body, "path": event["path"], "resource": event["resource"],
                            "has_key_header": "x-api-key" in event["headers"],
                            "key_id": event["requestContext"]["identity"]["apiKeyId"]}),
    }
