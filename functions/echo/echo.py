"""echo: answers with the event it was invoked with."""

from typing import Any


def handler(event: Any, context: Any) -> Any:
    return event
