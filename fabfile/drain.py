"""Draining a node (kubectl on the control plane) around a restart of its container runtime."""
from __future__ import annotations

import re
from dataclasses import dataclass

from fabric import Connection

from . import kube, probes, remote
from .inventory import Host
from .remote import RemoteError

DRAIN_TIMEOUT = 180  # seconds a node's pods may take to be evicted (--drain)


class DrainError(RemoteError):
    """A node could not be drained; it was uncordoned again."""


#: kubectl drain's line for an eviction a PodDisruptionBudget refused (429), retried until its timeout.
_BUDGET_REFUSAL = re.compile(r'error when evicting pods/"([^"]+)" -n "([^"]+)" \(will retry after [^)]*\): '
                             r"Cannot evict pod as it would violate the pod's disruption budget")


@dataclass(frozen=True)
class Drain:
    """Moves a node's pods away (kubectl on the control plane) while its runtime restarts, and
    lets them back after; `timeout`: seconds the evictions may take."""

    conn: Connection
    host: Host
    timeout: int = DRAIN_TIMEOUT

    def _kubectl(self, *args: str) -> None:
        kube.run(self.conn, self.host, kube.kubectl(self.host, *args))

    def cordon_and_drain(self, node: Host) -> str:
        """Cordon the node and evict its pods; its Kubernetes name. When that fails (a
        PodDisruptionBudget refuses an eviction until the timeout...), uncordon it and raise
        DrainError saying why."""
        name = node.vars["k8s_node_name"] or node.name
        self._kubectl("cordon", name)
        try:
            drain = kube.kubectl(self.host, "drain", name, "--ignore-daemonsets", "--delete-emptydir-data",
                                 f"--timeout={self.timeout}s")
            done = kube.run(self.conn, self.host, drain, check=False, timeout=self.timeout + 60)
            why = "" if done.ok else self._why(name, done.stderr)
        except RemoteError as exc:
            why = f"cannot drain {name}: {exc}"
        if why:
            self.uncordon(name)
            raise DrainError(why)
        return name

    def _why(self, name: str, stderr: str) -> str:
        """Why `kubectl drain` failed, with the fix: the budgets that refused evictions, by name."""
        refused: dict[str, list[str]] = {}
        for pod, namespace in dict.fromkeys(_BUDGET_REFUSAL.findall(stderr)):
            refused.setdefault(namespace, []).append(pod)
        if not refused:
            return f"cannot drain {name} within {self.timeout} s: {remote.tail(stderr, 1)}; see what holds its pods " \
                   "(`kubectl get pods -A --field-selector spec.nodeName=" + name + "`), or run without --drain"
        blocked = []
        for namespace, pods in refused.items():
            budgets = probes.disruption_budgets(self.conn, self.host, namespace, pods)
            for pod in pods:
                guards = ", ".join(f"{namespace}/{b['metadata']['name']} ({_allowed(b)} disruptions allowed)"
                                   for b in budgets.get(pod, [])) or "a budget"
                blocked.append(f"pod {namespace}/{pod} is protected by PodDisruptionBudget {guards}")
        return (f"cannot drain {name}: {'; '.join(blocked)}; wait until the budget allows a disruption (its pods "
                f"ready elsewhere), scale the workload up, or relax the budget's minAvailable/maxUnavailable, "
                f"then re-run; or run without --drain")

    def uncordon(self, name: str) -> None:
        """Let pods be scheduled on the node again."""
        self._kubectl("uncordon", name)


def _allowed(budget: dict) -> int:
    return (budget.get("status") or {}).get("disruptionsAllowed", 0)
