"""Command line: `python -m lab.cluster serve ...` and `python -m lab.cluster chart-repo ...`."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from lab.cluster import chartrepo


def _node(text: str) -> tuple[str, str | None]:
    name, _, address = text.partition("=")
    return name, address or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.cluster")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the emulated Kubernetes API over plain HTTP")
    serve.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=6443, help="port to listen on; 0 picks a free one (default 6443)")
    serve.add_argument("--kubeconfig", type=Path, required=True,
                       help="where to write a kubeconfig pointing at this server (written once it listens)")
    serve.add_argument("--state", type=Path, help="JSON snapshot of the objects: read at start, written at exit")
    serve.add_argument("--node", dest="nodes", action="append", type=_node, metavar="NAME[=IP]",
                       help="a node of the cluster (repeatable; default one node, lab-node-1)")
    serve.add_argument("--ready-delay", type=float, default=0.5,
                       help="seconds until Deployments and DaemonSets are ready after a change (default 0.5; "
                            "the pods lab.apps' runner plays: when it reports them ready)")
    serve.add_argument("--announce-dev", metavar="DEV",
                       help="announce MetalLB's assigned IPs on this host: add each to DEV as IP/32 while it is "
                            "assigned (`ip addr add`/`del`); default: announce nowhere")
    serve.add_argument("--pod-logs", type=Path, metavar="DIR",
                       help="serve `kubectl logs` of a pod from DIR/NAMESPACE/OWNER.log, OWNER its Deployment "
                            "(or DaemonSet, StatefulSet); default: every log is empty")
    serve.add_argument("--kube-version", default="1.32", metavar="1.24|1.32",
                       help="the Kubernetes version to be, serving exactly its built-in APIs (default 1.32)")
    serve.add_argument("--verbose", action="store_true", help="log every request to stderr")

    repo = commands.add_parser("chart-repo", help="make a Helm chart repository of packaged charts (`helm repo index`)")
    repo.add_argument("--charts", type=Path, required=True, help="directory holding the packaged charts (*.tgz)")
    repo.add_argument("--out", type=Path, required=True, help="directory to write the .tgz and index.yaml to")
    repo.add_argument("--url", required=True, help="URL the directory will be served at (for index.yaml)")
    repo.add_argument("--helm", default=str(chartrepo.DEFAULT_HELM), help="helm binary")

    args = parser.parse_args(argv)
    if args.command == "serve":
        from lab.cluster import apis
        from lab.cluster.announce import AddressAnnouncer
        from lab.cluster.api import LabCluster
        from lab.cluster.metallb import MetalLBController
        from lab.cluster.server import serve as run

        try:
            apis.minor(args.kube_version)
        except ValueError as exc:
            print(f"lab.cluster serve: --kube-version: {exc}", file=sys.stderr)
            return 2
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # lab.cluster logs requests itself
        logging.getLogger("lab.cluster.metallb").setLevel(logging.INFO)  # as MetalLB's pods log, always
        metallb = MetalLBController(AddressAnnouncer(args.announce_dev) if args.announce_dev else None)
        emulator = LabCluster(nodes=dict(args.nodes or [("lab-node-1", None)]), ready_delay=args.ready_delay,
                              load_balancer=metallb, pod_logs=args.pod_logs, kube_version=args.kube_version)
        asyncio.run(run(emulator, args.address, args.port, args.kubeconfig, args.state))
        return 0
    for archive in chartrepo.build(args.out, args.url, args.charts, args.helm):
        print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
