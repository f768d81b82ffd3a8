"""The nginx proxy host: the BinderHub site, checked, tested, reloaded and rolled back (runbook
steps 10, 11 and 13)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse

from fabric import Connection

from . import inventory, probes, remote
from .inventory import Host, InventoryError
from .probes import ClusterFacts
from .results import Change, Result
from .session import Facts, Run, host_task, step
from .values import hub_url

# The whole configuration as nginx would load it, with our site replaced by the candidate:
# a copy of /etc/nginx whose absolute paths point into the copy.
_TEST = r'''set -u
candidate=$1 name=$2
work=$(mktemp -d /tmp/bhops-nginx.XXXXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
cp -a /etc/nginx "$work/nginx"
rm -f "$work/nginx/sites-enabled/$name"
cp "$candidate" "$work/nginx/sites-enabled/$name"
grep -rlZ /etc/nginx/ "$work/nginx" | xargs -0 -r sed -i "s#/etc/nginx/#$work/nginx/#g"
out=$(nginx -t -q -c "$work/nginx/nginx.conf" 2>&1)
status=$?
printf '%s\n' "$out" | sed "s#$work/nginx/#/etc/nginx/#g"
exit "$status"
'''

PROBE_SECONDS = 5  # how long the probe through the proxy may keep failing after a reload
UPSTREAM_SECONDS = 30  # how long to wait, before a change, for the upstreams to answer (a pod starting)

_ENABLE = 'ln -sfn -- "$1" "$2"'
_DISABLE = 'if [ ! -e "$1" ]; then rm -f -- "$2"; fi'

# The HTTP status of a GET of URL from the proxy host itself, with whichever client it has,
# connecting to ADDRESS (when given) in place of the URL's host: an https certificate is checked
# against the URL's host name with the proxy host's own trust store, as users' browsers check it.
_HTTP = r'''url=$1 address=$2
if command -v curl >/dev/null 2>&1; then
    set -- -sS -o /dev/null -m 10 -w '%{http_code}' "$url"
    if [ -n "$address" ]; then set -- "$@" --connect-to "::$address:"; fi
    exec curl "$@"
elif command -v python3 >/dev/null 2>&1; then
    exec python3 - "$url" "$address" <<'PY'
import http.client, socket, ssl, sys
from urllib.parse import urlsplit
url, address = urlsplit(sys.argv[1]), sys.argv[2]
https = url.scheme == "https"
port = url.port or (443 if https else 80)
conn = (http.client.HTTPSConnection(url.hostname, port, timeout=10, context=ssl.create_default_context())
        if https else http.client.HTTPConnection(url.hostname, port, timeout=10))
if address:
    conn._create_connection = lambda _, *a, **k: socket.create_connection((address, port), *a, **k)
try:
    conn.request("GET", url.path + (f"?{url.query}" if url.query else ""))
    print(conn.getresponse().status, end="")
except (OSError, http.client.HTTPException) as e:
    sys.exit(f"python3: {e}")
PY
else
    echo "no curl or python3 on the proxy host to probe with" >&2; exit 2
fi
'''


@dataclass(frozen=True)
class Site:
    """The site's paths on the proxy host."""

    available: str
    enabled: str


def site_paths(host: Host) -> Site:
    name = host.vars["nginx_site"]
    return Site(f"/etc/nginx/sites-available/{name}", f"/etc/nginx/sites-enabled/{name}")


def site_context(run: Run, host: Host, facts: ClusterFacts | None) -> dict:
    """What the template needs: the cluster's facts, with the inventory's pins where given."""
    url = urlparse(inventory.public_url(host))
    https = url.scheme == "https"
    tls = inventory.tls(host)
    node_address = host.vars["binder_node_address"] or (facts and facts.node_address)
    node_port = (facts and facts.node_port) or host.vars["binder_node_port"]
    floating = (facts and facts.floating_ip) or host.vars["floating_ip"]
    if not node_address or not floating:
        why = "the cluster did not say" if facts else "the control plane could not be asked (see its result)"
        raise InventoryError(f"cannot tell {'a node address' if not node_address else 'the floating IP'} for "
                             f"the site: {why}; pin vars.binder_node_address / vars.floating_ip")
    return {"env": run.env.name, "server_name": url.hostname, "port": url.port or (443 if https else 80),
            "http_port": 80, "tls": tls, "binder_base_url": host.vars["binder_base_url"],
            "hub_base_url": host.vars["hub_base_url"], "node_address": node_address, "node_port": node_port,
            "floating_ip": floating, "log_dir": host.vars["nginx_log_dir"]}


def _failing(conn: Connection, host: Host, urls: dict[str, str], seconds: float, address: str = "") -> list[str]:
    """The URLs (label: url) that do not answer 200 from the proxy host (connecting to `address`
    when given), as `label -> status or error`, retried for `seconds` until all do."""
    deadline = time.monotonic() + seconds
    while True:
        failures = []
        for label, url in urls.items():
            out = remote.run(conn, host, remote.script(_HTTP, url, address), sudo=False, check=False)
            if not out.ok or out.stdout.strip() != "200":
                failures.append(f"{label} -> {out.stdout.strip() if out.ok else _first_line(out.stderr)}")
        if not failures or time.monotonic() > deadline:
            return failures
        time.sleep(0.5)


def _first_line(text: str) -> str:
    """What a client said first (curl's own error; what follows is advice)."""
    return next((line for line in text.splitlines() if line.strip()), "(no output)")


def _probe(conn: Connection, host: Host, context: dict) -> list[str]:
    """Requests through the proxy that did not answer 200. A reload is graceful (old workers
    finish first), so a failure is retried for a few seconds. The hub's `hub/health` is the path
    both eras answer (JupyterHub 1.3 has no `hub/api/health`) and the charts' own readinessProbe."""
    base = f"{'https' if context['tls'] else 'http'}://{context['server_name']}:{context['port']}"
    paths = (f"{context['binder_base_url']}versions", f"{context['hub_base_url']}hub/health")
    return _failing(conn, host, {p: base + p for p in paths}, PROBE_SECONDS, address="127.0.0.1")


def _await_upstreams(conn: Connection, host: Host, context: dict) -> None:
    """Give the upstreams the site points at (the binder's NodePort, proxy-public) a while to
    answer before the change, so that a pod still starting is not blamed on the new site; the
    probe after the reload judges either way."""
    _failing(conn, host, {
        "binder": f"http://{context['node_address']}:{context['node_port']}{context['binder_base_url']}versions",
        "hub": f"http://{context['floating_ip']}:80{context['hub_base_url']}hub/health",
    }, UPSTREAM_SECONDS)


def render_site(context: dict) -> str:
    """The site file's text for `context` (see `site_context`)."""
    from .rendering import render  # jinja2: imported only by the tasks that render

    return render("nginx-site.conf.j2", **context)


@step("nginx.reload")
def reload_site(conn: Connection, host: Host, contexts: dict[str, dict]) -> Result | Change:
    """Render the site and install it (see `install_site`)."""
    return install_site(conn, host, render_site(contexts[host.name]), contexts[host.name])


def install_site(conn: Connection, host: Host, text: str, context: dict) -> Result | Change:
    """When `text` differs from the live site: test the whole candidate config with
    `nginx -t`, back up and swap the file atomically, reload, probe through the proxy, and
    restore the backup (and reload) when the probe fails."""
    site = site_paths(host)
    state = probes.nginx(conn, host, site.available)
    manager, live = state.manager, state.site
    if not state.has_nginx:
        return Result.failed(f"nginx is not installed on {host.name}: apt-get install nginx")
    if live == text:
        return Result.ok(f"{site.available} is current")

    def swap() -> Result:
        with remote.private_files(conn, host, {"site.conf": text}) as directory:
            test = remote.run(conn, host, remote.script(_TEST, f"{directory}/site.conf", host.vars["nginx_site"]),
                              check=False)
            if test.failed:
                return Result.failed(f"nginx -t rejected the new site; the live one is untouched: "
                                     f"{remote.tail(test.stdout)}")
            _await_upstreams(conn, host, context)
            backup = remote.write(conn, host, site.available, text, "0644")
        remote.run(conn, host, remote.script(_ENABLE, site.available, site.enabled))
        remote.service(conn, host, manager, "nginx", "reload")
        failures = _probe(conn, host, context)
        if failures:
            error_log = f"{context['log_dir']}/binderhub-error.log"
            last = remote.run(conn, host, ["tail", "-n", "1", error_log], check=False).stdout.strip()
            remote.restore(conn, host, site.available, backup)
            remote.run(conn, host, remote.script(_DISABLE, site.available, site.enabled))
            remote.service(conn, host, manager, "nginx", "reload")
            return Result.failed(f"probe through the proxy failed ({'; '.join(failures)}); restored "
                                 f"{'the previous site from ' + backup if backup else 'no site (there was none)'} "
                                 f"and reloaded; {error_log}: {last or '(empty)'}")
        return Result.changed(f"wrote {site.available}{f' (backup {backup})' if backup else ''}, reloaded nginx, "
                              f"{context['binder_base_url']} and {context['hub_base_url']} answer")
    return Change(f"write {site.available} and reload nginx", swap, remote.file_diff(live, text, site.available))


def _locations(text: str) -> dict[str, str]:
    """location path: proxy_pass target, for each location of a site file."""
    return {path: (re.search(r"proxy_pass\s+([^;]+);", body) or [None, ""])[1]
            for path, body in re.findall(r"location\s+(\S+)\s*\{([^}]*)\}", text)}


@step("nginx.check")
def check(conn: Connection, host: Host, facts: ClusterFacts | None, deployed: dict | None) -> list[Result]:
    """Read-only: the base URLs, hub_url, the live site's locations, the binder NodePort and the
    floating IP must agree; one failed result per mismatch, with its fix."""
    problems = []
    v, site = host.vars, site_paths(host)
    live = probes.nginx(conn, host, site.available).site
    config = ((deployed or {}).get("config") or {}).get("BinderHub") or {}
    hub = ((deployed or {}).get("jupyterhub") or {}).get("hub") or {}
    expected = {"config.BinderHub.base_url": (config.get("base_url"), v["binder_base_url"]),
                "jupyterhub.hub.baseUrl": (hub.get("baseUrl"), v["hub_base_url"]),
                "config.BinderHub.hub_url": (config.get("hub_url"), hub_url(host))}
    if deployed is None:
        problems.append("no release deployed: run helm.upgrade")
    else:
        problems += [f"{key} is {got!r} in the release, the inventory says {want!r}: run helm.upgrade"
                     for key, (got, want) in expected.items() if got != want]
        if config.get("hub_url") and hub.get("baseUrl") and not config["hub_url"].endswith(hub["baseUrl"]):
            problems.append(f"hub_url {config['hub_url']!r} does not end with the hub's baseUrl {hub['baseUrl']!r}")
    if live is None:
        problems.append(f"{site.available} does not exist: run nginx.reload")
    else:
        locations = _locations(live)
        binder_pass, hub_pass = locations.get(v["binder_base_url"]), locations.get(v["hub_base_url"])
        for path, target in ((v["binder_base_url"], binder_pass), (v["hub_base_url"], hub_pass)):
            if target is None:
                problems.append(f"the site has no `location {path}` (base URLs changed?): run nginx.reload")
        if binder_pass and facts and facts.node_port and f":{facts.node_port}" not in binder_pass:
            problems.append(f"location {v['binder_base_url']} proxies to {binder_pass}, but the binder "
                            f"NodePort is {facts.node_port}: run nginx.reload")
        if hub_pass and facts and facts.floating_ip and f"//{facts.floating_ip}:" not in hub_pass:
            problems.append(f"location {v['hub_base_url']} proxies to {hub_pass}, but proxy-public holds "
                            f"{facts.floating_ip}: run nginx.reload")
        if hub_pass and not hub_pass.endswith(v["hub_base_url"]):
            problems.append(f"location {v['hub_base_url']} proxies to {hub_pass}, which drops the hub's base URL")
    if facts and v["floating_ip"] and facts.floating_ip != v["floating_ip"]:
        problems.append(f"proxy-public holds {facts.floating_ip or 'no IP'}, the inventory's floating_ip is "
                        f"{v['floating_ip']}: run cluster.floating-ip")
    if not problems:
        return [Result.ok("base URLs, hub_url, nginx locations, NodePort and floating IP agree")]
    return [Result.failed(p) for p in problems]


def cluster_facts_of(run: Run, of: Callable[..., Any]) -> Facts:
    """The cluster's facts for the site, read on the control plane for step `of` (none if they
    cannot be read)."""
    return run.gather(run.control_plane(), probes.cluster_facts, of=of)


def reload_stage(run: Run) -> list[Result]:
    """nginx.reload on every proxy host, with the cluster's facts (used by deploy)."""
    facts = cluster_facts_of(run, reload_site)
    proxies = run.hosts("proxy")
    contexts = {h.name: site_context(run, h, facts.get(run.control_plane()[0].name)) for h in proxies}
    return facts.failures + run.each(proxies, reload_site, contexts=contexts)


@host_task(reload_site.label, name="reload", needs=("public_url", "proxy_url"))
def reload_task(run: Run):
    """Render the nginx site; test, swap, reload and probe it; roll back on failure."""
    reload_stage(run)


@host_task(check.label, name="check", changes=False, needs=("public_url", "proxy_url"))
def check_task(run: Run):
    """Check that base URLs, hub_url, nginx routes, NodePort and floating IP agree."""
    control_plane = run.control_plane()[0]
    facts = cluster_facts_of(run, check).get(control_plane.name)
    released = run.gather(run.control_plane(), probes.release_state, of=check).get(control_plane.name)
    deployed = released.values if released and released.release else None
    run.each(run.hosts("proxy"), check, facts=facts, deployed=deployed)
