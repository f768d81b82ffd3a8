"""Command line: `python -m lab.apps run|binder|idp|fault ...` (see --help of each)."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from lab.apps import faults
from lab.apps.hub import DEFAULT_CHP

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _run(args: argparse.Namespace) -> int:
    from lab.apps.runner import Api, Runner

    (args.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, filename=args.state_dir / "logs" / "runner.log")
    Runner(Api(args.api, args.namespace), args.node_address, args.state_dir, nodeport_address=args.nodeport_address,
           chp=args.chp, keepalive=args.keepalive, hold_open=args.hold_open, interval=args.interval,
           pod_logs=args.pod_logs).run()
    return 0


def _binder(args: argparse.Namespace) -> int:
    from lab.apps.binder import BinderSettings, serve

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        settings = BinderSettings.from_config(
            json.loads(args.config.read_text()), os.environ.get("JUPYTERHUB_API_TOKEN", ""),
            keepalive=args.keepalive, hold_open=args.hold_open, step_delay=args.step_delay,
            faults_file=args.faults, state_dir=str(args.state_dir) if args.state_dir else None)
    except ValueError as exc:
        logging.getLogger("lab.apps.binder").error("cannot start: %s", exc)
        return 1
    asyncio.run(serve(settings, args.address, args.port))
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


def _fault(args: argparse.Namespace) -> int:
    faults.choose(args.file, None if args.name == "clear" else args.name)
    print(f"labapps: fault {args.name} in {args.file}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.apps")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the release's workloads found in the API (the lab's kubelet)")
    run.add_argument("--api", required=True, help="the API emulator's URL, e.g. http://10.77.0.11:6443")
    run.add_argument("--namespace", default="binder", help="the release's namespace (default binder)")
    run.add_argument("--node-address", required=True,
                     help="this node's address: where the hub API, proxy API and users' servers listen")
    run.add_argument("--state-dir", type=Path, default=Path("/var/lib/labapps"),
                     help="state, logs/ and faults.json (default /var/lib/labapps)")
    run.add_argument("--nodeport-address", default="0.0.0.0",
                     help="address NodePorts are served on, as kube-proxy's --nodeport-addresses (default 0.0.0.0)")
    run.add_argument("--chp", type=Path, default=DEFAULT_CHP,
                     help="configurable-http-proxy (default: the one scripts/install-lab-apps installs)")
    run.add_argument("--pod-logs", type=Path, metavar="DIR",
                     help="link each process's log as DIR/NAMESPACE/DEPLOYMENT.log (lab.cluster serve --pod-logs)")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between reads of the API (default 1)")
    run.add_argument("--keepalive", type=float, default=25.0, help="binder: seconds between :keepalive comments")
    run.add_argument("--hold-open", type=float, default=60.0, help="binder: seconds a stream stays open after ready")

    binder = commands.add_parser("binder", help="serve the BinderHub API (JUPYTERHUB_API_TOKEN: the hub token)")
    binder.add_argument("--config", type=Path, required=True,
                        help="JSON: the `config` of the chart's BinderHub values (BinderHub, RateLimiter, Launcher)")
    binder.add_argument("--address", default="0.0.0.0")
    binder.add_argument("--port", type=int, required=True)
    binder.add_argument("--state-dir", type=Path, help="where the names of built images are kept")
    binder.add_argument("--faults", default=os.environ.get(faults.FAULTS_ENV),
                        help=f"the faults file (default ${faults.FAULTS_ENV})")
    binder.add_argument("--keepalive", type=float, default=25.0, help="seconds between :keepalive comments")
    binder.add_argument("--hold-open", type=float, default=60.0, help="seconds a stream stays open after ready")
    binder.add_argument("--step-delay", type=float, default=0.2, help="seconds between build log lines")

    idp = commands.add_parser("idp", help="serve an OAuth2 identity provider (authorization-code grant)")
    idp.add_argument("--config", type=Path, required=True,
                     help='0600 JSON: {"clients": {ID: {"secret", "redirect_uris"}}, "users": {NAME: PASSWORD}}')
    idp.add_argument("--address", default="127.0.0.1")
    idp.add_argument("--port", type=int, required=True)

    fault = commands.add_parser("fault", help="choose the fault the lab's apps produce from now on")
    fault.add_argument("name", choices=[*faults.FAULTS, "clear"])
    fault.add_argument("--file", type=Path, default=Path("/var/lib/labapps/faults.json"),
                       help="the faults file (default the runner's, /var/lib/labapps/faults.json)")

    args = parser.parse_args(argv)
    return {"run": _run, "binder": _binder, "idp": _idp, "fault": _fault}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
