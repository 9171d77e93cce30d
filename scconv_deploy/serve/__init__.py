"""An HTTP inference server speaking the KServe v2 / Triton protocol, on Starlette and uvicorn.

``create_app(model, name)`` builds the ASGI app (``app``), over an ``InferenceService``
(``service``: endpoints, bounded concurrency, dynamic batching via ``batching``, metrics);
``protocol`` parses and encodes the JSON and binary tensors; ``server`` runs it on uvicorn.
Starlette, uvicorn and prometheus-client are imported when an app is built, not on import.
"""

from ..errors import ServeError
from .app import create_app
from .protocol import RequestError
from .server import BackgroundServer, run_server
from .service import InferenceService

__all__ = ["BackgroundServer", "InferenceService", "RequestError", "ServeError", "create_app", "run_server"]
