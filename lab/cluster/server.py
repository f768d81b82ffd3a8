"""Serve a `LabCluster` over plain HTTP until SIGTERM/SIGINT, with a kubeconfig pointing at it."""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp.web
import yaml

from lab.cluster import state
from lab.cluster.api import LabCluster


def kubeconfig(server_url: str, name: str = "labcluster") -> dict:
    """A kubeconfig for a plain-HTTP server with no authentication."""
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": server_url}}],
            "users": [{"name": name, "user": {}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name}


def write_kubeconfig(path: Path, server_url: str) -> None:
    """Written atomically (its appearance tells a waiting process that the server is up)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(yaml.safe_dump(kubeconfig(server_url), sort_keys=False))
    temporary.chmod(0o600)
    os.replace(temporary, path)


async def serve(emulator: LabCluster, address: str, port: int, kubeconfig_path: Path,
                state_path: Path | None = None) -> None:
    """Listen on address:port (0: any free port), write the kubeconfig, serve until signalled."""
    if state_path and state_path.exists():
        state.load(emulator.cluster, state_path)
    emulator.bootstrap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator, handler_cancellation=True),
                                      shutdown_timeout=1.0)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, address, port)
    async with emulator:
        await site.start()
        bound_port = runner.addresses[0][1]
        host = f"[{address}]" if ":" in address else address
        emulator.server_address = f"{host}:{bound_port}"
        url = f"http://{host}:{bound_port}"
        write_kubeconfig(kubeconfig_path, url)
        print(f"labcluster: serving {url} (kubeconfig {kubeconfig_path})", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            emulator.load_balancer.close()
            if state_path:
                state.save(emulator.cluster, state_path)
    print("labcluster: stopped", flush=True)
