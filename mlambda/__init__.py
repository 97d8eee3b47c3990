"""mlambda: serverless ML inference on machines you own.

`mlambda.Client` is the Python SDK (imported lazily: instances import `mlambda.volume`
and must not pay for the HTTP client).
"""

from typing import Any

__all__ = ["Client"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from mlambda.client import Client

        return Client
    raise AttributeError(name)
