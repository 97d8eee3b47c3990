from typing import Any

import a_module_that_does_not_exist  # noqa: F401


def handler(event: Any, context: Any) -> Any:
    return event
