"""The operator's server: quart-trio on hypercorn, HTTPS with HTTP/1.1 and HTTP/2."""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
