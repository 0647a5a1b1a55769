"""The admin REST API (``/api/v1``): device inventory. Every route needs an admin credential."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from hosts.core.authority import Authority

from .peercert import peer_certificate

Handler = Callable[..., Awaitable[Response]]


def register_admin_api(
    app: QuartTrio,
    authority: Authority,
    json_response: Callable[[Any, int], Response],
    json_body: Callable[[], Awaitable[Any]],
) -> None:
    inventory = authority.inventory

    def admin_only(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            header = request.headers.get("Authorization", "")
            bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
            peer = peer_certificate(request.scope)  # type: ignore[arg-type]
            await trio.to_thread.run_sync(authority.check_admin, bearer, peer)
            return await handler(*args, **kwargs)

        return wrapper

    @app.get("/api/v1/devices")
    @admin_only
    async def list_devices() -> Response:
        query = {k: v for k, v in request.args.items()}
        return json_response(await trio.to_thread.run_sync(inventory.list, query), 200)

    @app.post("/api/v1/devices")
    @admin_only
    async def add_device() -> Response:
        body = await json_body()
        device = await trio.to_thread.run_sync(inventory.add, body)
        return json_response(device.to_json(), 201)

    @app.post("/api/v1/devices/<path:ek>/disable")
    @admin_only
    async def disable_device(ek: str) -> Response:
        device = await trio.to_thread.run_sync(inventory.disable, ek)
        return json_response(device.to_json(), 200)

    @app.get("/api/v1/devices/<path:ek>")
    @admin_only
    async def get_device(ek: str) -> Response:
        device = await trio.to_thread.run_sync(inventory.get, ek)
        return json_response(device.to_json(), 200)

    @app.patch("/api/v1/devices/<path:ek>")
    @admin_only
    async def update_device(ek: str) -> Response:
        body = await json_body()
        device = await trio.to_thread.run_sync(inventory.update, ek, body)
        return json_response(device.to_json(), 200)

    @app.delete("/api/v1/devices/<path:ek>")
    @admin_only
    async def delete_device(ek: str) -> Response:
        await trio.to_thread.run_sync(inventory.remove, ek)
        return Response(b"", status=204)
