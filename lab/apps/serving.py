"""Serving an aiohttp application until the process is asked to stop."""
from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web


async def serve_until_stopped(app: web.Application, address: str, port: int, started: Callable[[], None],
                              **runner_options) -> None:
    """Serve `app` on address:port, call `started`, and run until SIGTERM or SIGINT."""
    runner = web.AppRunner(app, shutdown_timeout=2, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    started()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
