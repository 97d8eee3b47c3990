from pathlib import Path
from typing import Any

from mlambda.volume import Model


def load(path: Path) -> str:
    text = path.read_text()
    if text.startswith("BROKEN"):
        raise ValueError("this model file cannot be loaded")
    return text


greeting = Model("greeting", load)


def handler(event: Any, context: Any) -> Any:
    return {"greeting": greeting.get()}
