"""Command line: `python -m lab.apps run|idp ...` (see --help of each)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _run(args: argparse.Namespace) -> int:
    from lab.apps.runner import Api, Runner

    (args.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, filename=args.state_dir / "logs" / "runner.log")
    Runner(Api(args.api, args.namespace), args.node_address, args.state_dir, run_dir=args.run_dir,
           interval=args.interval, pod_logs=args.pod_logs).run()
    return 0


def _idp(args: argparse.Namespace) -> int:
    from lab.apps.idp import IdpConfig, serve

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        config = IdpConfig.load(args.config)
    except ValueError as exc:
        logging.getLogger("lab.apps.idp").error("cannot start: %s", exc)
        return 1
    asyncio.run(serve(config, args.address, args.port))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.apps")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pods of the images the lab knows (the lab's kubelet)")
    run.add_argument("--api", required=True, help="the API emulator's URL, e.g. http://10.77.0.11:6443")
    run.add_argument("--namespace", default="binder", help="the namespace whose pods it runs (default binder)")
    run.add_argument("--node-address", required=True, help="this node's address (NodePorts, masquerade)")
    run.add_argument("--state-dir", type=Path, default=Path("/var/lib/labapps"),
                     help="logs/, status.json and the claims' data (default /var/lib/labapps)")
    run.add_argument("--run-dir", type=Path, default=Path("/run/labapps"),
                     help="the pods' volumes and tokens, on tmpfs (default /run/labapps)")
    run.add_argument("--pod-logs", type=Path, metavar="DIR",
                     help="link each pod's log as DIR/NAMESPACE/WORKLOAD.log (lab.cluster serve --pod-logs)")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between reads of the API (default 1)")

    idp = commands.add_parser("idp", help="serve an OAuth2 identity provider (authorization-code grant)")
    idp.add_argument("--config", type=Path, required=True,
                     help='0600 JSON: {"clients": {ID: {"secret", "redirect_uris"}}, "users": {NAME: PASSWORD}}')
    idp.add_argument("--address", default="127.0.0.1")
    idp.add_argument("--port", type=int, required=True)

    args = parser.parse_args(argv)
    return {"run": _run, "idp": _idp}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
