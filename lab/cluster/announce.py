"""Layer 2 announcing on the host the emulator runs on (`serve --announce-dev DEV`).

MetalLB's speaker answers ARP for an assigned IP from one node. The lab does it with the host's
kernel instead: the IP is added to DEV as `IP/32` (`ip addr add`), so the host answers ARP for it
and its processes receive the traffic; it is deleted again (`ip addr del`) when no longer announced
and at shutdown. Each change is logged; a failed `ip` command is logged and not retried.
"""
from __future__ import annotations

import logging
import subprocess

log = logging.getLogger("lab.cluster.metallb")


class AddressAnnouncer:
    def __init__(self, device: str):
        self.device = device
        self.addresses: set[str] = set()

    def update(self, wanted: set[str]) -> None:
        """Make the announced addresses `wanted`: add the new ones, delete the others."""
        for address in sorted(self.addresses - wanted):
            self._ip("del", address)
        for address in sorted(wanted - self.addresses):
            self._ip("add", address)
        self.addresses = set(wanted)

    def close(self) -> None:
        self.update(set())

    def _ip(self, verb: str, address: str) -> None:
        argv = ["ip", "addr", verb, f"{address}/32", "dev", self.device]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("speaker: %s failed: %s", " ".join(argv), exc)
            return
        if proc.returncode:
            log.error("speaker: %s failed: %s", " ".join(argv), proc.stderr.strip())
        else:
            log.info("speaker: %s", " ".join(argv))
