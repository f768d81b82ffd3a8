"""Bring up, inspect and tear down the local lab of namespace hosts: the `lab` collection."""
from invoke import Collection, Exit, task

from . import hosts


def _call(function, *args):
    """Run a lab.hosts function; its LabError becomes Invoke's Exit (message, exit code 1)."""
    try:
        return function(*args)
    except hosts.LabError as e:
        raise Exit(str(e)) from None


def _print_table(infos: list[hosts.HostInfo]) -> None:
    if not infos:
        print("The lab is down.")
        return
    if version := hosts.cluster_kube_version():
        print(f"Kubernetes {version} on lab-{hosts.CONTROL_PLANE}: API :6443, chart repository :8879")
    for registry in (h for h in infos if h.name == hosts.REGISTRY):
        print(f"Registry https://{registry.address}:{hosts.REGISTRY_PORT} (lab CA: {hosts.state_dir() / 'ca.crt'}); "
              f"nodes' runtime: {hosts.lab_runtime() or hosts.DEFAULT_RUNTIME}")
    rows = [("HOST", "ADDRESS", "ROLES", "RUNTIME", "RUNNING", "SSH", "SERVICE")] + [
        (h.alias, h.address, ",".join(h.roles), h.runtime or "-",
         *("yes" if ok else "no" for ok in (h.running, h.ssh_ok, h.service_ok)))
        for h in infos
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@task(auto_shortflags=False,
      help={"nodes": f"number of nodes, 1 to {hosts.MAX_NODES} (default 3), besides the proxy and the registry",
            "kube-version": f"the cluster's Kubernetes version, {' or '.join(hosts.KUBE_VERSIONS)} (default: the "
                            f"running lab's, else {hosts.DEFAULT_KUBE_VERSION})",
            "runtime": f"what the nodes run, {', '.join(hosts.RUNTIMES)} (lab-node1 and odd nodes docker, even "
                       f"nodes containerd); default: the running lab's, else {hosts.DEFAULT_RUNTIME}"})
def up(c, nodes=3, kube_version=None, runtime=None):
    """Start the lab's hosts (idempotent); write its hosts.yaml and ssh_config.

    Running hosts are kept; a changed --nodes adds or removes nodes, a changed --kube-version
    restarts the control plane (its cluster then starts empty), a changed --runtime restarts the
    nodes whose runtime changes (to or from containerd, lab-node1 too: the control plane). The
    registry host lab-registry (https://10.77.0.6:5000, trusting the lab CA: ca.crt in the state
    dir) gets the lab's images. The chart repository serves the real charts from $BHOPS_CHARTS,
    else `helm pull`ed once into the state dir. The state (keys, ssh_config, hosts.yaml) is in
    .lab/ or $BHOPS_LAB_DIR; the per-host files too, or in /srv/bhops-lab/<hash> when that is
    under /etc, /var, /usr or /opt (docs/lab.md).
    """
    _print_table(_call(hosts.up, nodes, None, kube_version, None, runtime))


@task(auto_shortflags=False)
def down(c):
    """Stop every lab host and remove its network, mounts and files."""
    _call(hosts.down)


@task(auto_shortflags=False)
def status(c):
    """Show the cluster's Kubernetes version and each lab host: running, sshd and service answering."""
    _print_table(hosts.status())


ns = Collection("lab", up, down, status)
