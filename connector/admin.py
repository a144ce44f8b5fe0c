"""The admin listener: health and Prometheus metrics (failures and replay arrive with the operators' tools)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connector.observability import Metrics


def create_admin_app(metrics: Metrics) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app


async def start_admin(metrics: Metrics, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve the admin app; port 0 picks a free one. Returns the runner and the base URL."""
    runner = web.AppRunner(create_admin_app(metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"
