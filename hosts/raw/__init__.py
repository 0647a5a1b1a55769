"""The raw host: trio + h11 over trio's TLS streams, serving devid's route table.

Minimal overhead for the hot signing path; it serves exactly the routes of
the quart host (hosts/http/api.py) and shares its executor, so one
conformance suite runs against both.
"""

from .server import serve, serve_workers

__all__ = ["serve", "serve_workers"]
