import json
from typing import Any


def handler(event: Any, context: Any) -> Any:
    print("printer got", json.dumps(event))
    print("printer headers", event["headers"])
    return {"statusCode": 200, "body": json.dumps({"ok": True})}
