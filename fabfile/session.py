"""A run of one task on one environment: inventory, connections, parallel steps, recap."""
from __future__ import annotations

import dataclasses
import inspect
import socket
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import invoke
import paramiko
from fabric import Connection
from invoke import Context, Exit, task

from . import inventory, secretfile, settings
from .connections import ConnectError, Pool
from .inventory import Environment, Host, InventoryError
from .localfiles import LocalFileError, open_private
from .remote import RemoteError
from .results import Change, Reporter, Result, Status
from .secretfile import Secret, SecretsError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: The `help=` entries of the flags every host task takes.
HELP = {
    "env": "environment in hosts.yaml to work on (e.g. lab, staging, prod)",
    "limit": "only these hosts, comma-separated (names as in hosts.yaml)",
    "dry_run": "probe for real, change nothing, and show what would change",
    "parallel": "how many hosts to work on at once (default 10)",
    "inventory": "inventory file (default: $BHOPS_INVENTORY, else the config's `inventory`, else hosts.yaml "
                 "here, or beside tasks.py under invoke)",
    "accept_new_host_keys": "trust host keys missing from known_hosts, for this run only",
}
#: The same for read-only tasks, which have no --dry-run.
READ_HELP = {k: v for k, v in HELP.items() if k != "dry_run"}

#: The only short flags, each meaning one long flag in every task; the others are long-only, and
#: so are the flags that change or take over something (--drain, --break-lock, --yes, --rotate, --fix).
SHORT_FLAGS = {"env": "e", "inventory": "i", "limit": "l", "dry_run": "n", "parallel": "p"}


class Task(invoke.Task):
    """An Invoke task whose short flags are SHORT_FLAGS, whatever its other arguments are."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **{**kwargs, "auto_shortflags": False})

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"].append(SHORT_FLAGS[name])
        if opts.get("kind") is int:
            opts["kind"] = str  # parsed in __call__: Invoke's own int() would end in a traceback
        return opts

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        whole = {n for n, p in self.argspec(self.body).parameters.items() if type(p.default) is int}
        for name in whole & set(kwargs):
            kwargs[name] = whole_number(name, kwargs[name])
        return super().__call__(*args, **kwargs)


def whole_number(name: str, value: Any) -> int:
    """A flag's value as a whole number; a one-line error naming the flag otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise Exit(f"--{name.replace('_', '-')} takes a whole number, not {value!r}")
    return int(text)


#: Failures of the connection itself during a step: the host is reported unreachable.
_LOST = (EOFError, socket.error, paramiko.SSHException)


def step(label: str) -> Callable[[F], F]:
    """Name a step function `fn(conn, host, **kwargs)`: the run labels its results so."""
    def name(fn: F) -> F:
        fn.label = label  # type: ignore[attr-defined]
        return fn
    return name


class Facts(dict):
    """A probe's value per host that answered; `failures` holds the results of the others."""

    failures: list[Result]


@dataclass
class Run:
    """What the steps of one task run share: hosts, connections, the reporter and the settings."""

    env: Environment
    dry_run: bool = False
    parallel: int = 10
    pool: Pool = field(default_factory=Pool)
    reporter: Reporter = field(default_factory=Reporter)
    settings: settings.Settings = field(default_factory=settings.resolve)
    log_base: Path | None = None  # the run's log, without its suffix, when the task keeps one
    failed: bool = False  # whether any result failed or was unreachable

    @property
    def secrets_path(self) -> Path:
        """The environment's secrets file."""
        return secretfile.path_for(self.env.name, self.settings.secrets_dir)

    def secrets(self) -> dict[str, Secret]:
        """The environment's chart secrets, masked from now on in everything the run shows. A
        dry run stands in placeholders for the ones a real run would make first."""
        path = self.secrets_path
        try:
            values = secretfile.load(path) if path.exists() or not self.dry_run else {}
        except SecretsError as exc:
            raise Exit(str(exc)) from None
        if self.dry_run:
            values = {**{n: Secret("(made by the real run)") for n in secretfile.GENERATED}, **values}
        self.reporter.masked.hide(v.reveal() for v in values.values())
        return values

    def hosts(self, role: str) -> tuple[Host, ...]:
        """The hosts of the environment holding `role`."""
        return self.env.with_role(role)

    def control_plane(self) -> tuple[Host]:
        """The first control-plane host: kubectl and helm run there."""
        return self.env.with_role("control-plane")[:1]

    def report(self, result: Result) -> Result:
        """Print `result` now and count it in the run's outcome."""
        self.failed |= result.status in (Status.FAILED, Status.UNREACHABLE)
        return self.reporter.emit(result)

    def settle(self, host: str, label: str, out: Result | Change, start: float) -> Result:
        """A step's outcome as its result: host and step named, a Change applied (in a dry run
        only described: nothing a step decides to change is made)."""
        if isinstance(out, Change):
            out = Result.changed(out.detail, out.diff) if self.dry_run else _applied(out)
        return dataclasses.replace(out, host=out.host or host, step=out.step or label,
                                   duration=time.monotonic() - start)

    def local(self, fn: Callable[..., Result | Change], **kwargs: Any) -> list[Result]:
        """Run a step on this machine (host `local`) and report its result."""
        start = time.monotonic()
        return [self.report(self.settle("local", fn.label, fn(**kwargs), start))]

    def _call(self, host: Host, label: str, fn: Callable[..., T], kwargs: dict[str, Any]) -> T | Result:
        """`fn(conn, host, **kwargs)` settled, or a failed/unreachable Result when it cannot complete."""
        start = time.monotonic()
        try:
            conn: Connection = self.pool.get(host)
            out = fn(conn, host, **kwargs)
            if isinstance(out, (Result, Change)):
                return self.settle(host.name, label, out, start)
            if isinstance(out, list):
                return [self.settle(host.name, label, r, start) for r in out]
            return out
        except ConnectError as exc:
            status = Status.UNREACHABLE if exc.unreachable else Status.FAILED
            return Result(host.name, label, status, str(exc))
        except RemoteError as exc:
            return Result(host.name, label, Status.FAILED, str(exc))
        except _LOST as exc:
            return Result(host.name, label, Status.UNREACHABLE, f"connection lost: {exc or type(exc).__name__}")
        except (InventoryError, Exit):
            raise
        except Exception as exc:  # a defect in the step: that host's failure, the others go on
            return Result(host.name, label, Status.FAILED, f"unexpected {type(exc).__name__}: {exc}")

    def _parallel(self, hosts: Sequence[Host], label: str, fn: Callable[..., T], kwargs: dict[str, Any],
                  on_done: Callable[[T | Result], Any] = lambda out: None) -> list[T | Result]:
        """Run on worker threads, calling `on_done` with each host's outcome as it comes; return
        the outcomes in host order. Whatever ends it early (Ctrl-C, an error), steps not started
        are dropped and the ones under way are let finish first: a step never stops half-way
        through a change (a second Ctrl-C abandons them)."""
        if not hosts:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.parallel, len(hosts)))
        futures = [pool.submit(self._call, h, label, fn, kwargs) for h in hosts]
        try:
            for future in as_completed(futures):
                on_done(future.result())
        except KeyboardInterrupt:
            self.reporter.note("interrupt",
                               "stopping: letting the steps under way finish (Ctrl-C again to abandon them)")
            raise
        finally:
            for future in futures:
                future.cancel()
            wait(futures)
            pool.shutdown(wait=False)
        return [f.result() for f in futures]

    def each(self, hosts: Sequence[Host], fn: Callable[..., Result | Change | list[Result]],
             **kwargs: Any) -> list[Result]:
        """Run a step on every host in parallel, report its result(s) as each host finishes, and
        return them."""
        def emit(out: Result | list[Result]) -> None:
            for result in out if isinstance(out, list) else [out]:
                self.report(result)
        done = self._parallel(hosts, fn.label, fn, kwargs, on_done=emit)
        return [r for out in done for r in (out if isinstance(out, list) else [out])]

    def gather(self, hosts: Sequence[Host], probe: Callable[..., T], *, of: Callable[..., Any] | str,
               **kwargs: Any) -> Facts:
        """Run a probe for step `of` (or a label) on every host in parallel; return the facts of
        the hosts that answered, with the results of those that did not (reported as they come)."""
        report = lambda out: isinstance(out, Result) and self.report(out)  # noqa: E731
        outcomes = self._parallel(hosts, of if isinstance(of, str) else of.label, probe, kwargs, on_done=report)
        facts = Facts((h.name, out) for h, out in zip(hosts, outcomes) if not isinstance(out, Result))
        facts.failures = [out for out in outcomes if isinstance(out, Result)]
        return facts

    def in_batches(self, hosts: Sequence[Host], size: int, fn: Callable[..., Result | Change],
                   **kwargs: Any) -> list[Result]:
        """Run a step on `size` hosts at a time, in host order: the hosts of a batch in parallel
        (at most --parallel at once), each result reported as it comes, and the next batch only
        once the whole batch has finished. After a batch in which a host failed or was
        unreachable, the remaining hosts are skipped, not touched."""
        results: list[Result] = []
        failed: list[str] = []
        for start in range(0, len(hosts), size):
            batch = hosts[start:start + size]
            if failed:
                why = f"not touched: rollout stopped after {', '.join(failed)} failed"
                results += [self.report(Result(h.name, fn.label, Status.SKIPPED, why)) for h in batch]
                continue
            done = self.each(batch, fn, **kwargs)
            failed = list(dict.fromkeys(r.host for r in done if r.status in (Status.FAILED, Status.UNREACHABLE)))
            results += done
        return results


def _applied(change: Change) -> Result:
    """Make the change; its result, with the change's diff unless it has its own."""
    out = change.apply()
    return out if out.diff else dataclasses.replace(out, diff=change.diff)


@contextmanager
def session(c: Context, env: str | None, title: str, *, limit: str | None = None,
            dry_run: bool = False, parallel: int = 10, inventory_path: str | None = None,
            accept_new_host_keys: bool = False, needs: Sequence[str] = (), log: str | None = None) -> Iterator[Run]:
    """Open a Run for a task: the inventory loaded and checked for what the task `needs`, and
    with `log`, every line also written to LOGS/LOG-ENV-TIME.log. Print the recap at the end
    and exit 1 if any host failed."""
    if c.config.run.dry:
        raise Exit("Invoke's --dry would skip the probes and still upload; use the task's --dry-run")
    if parallel < 1:
        raise Exit(f"--parallel must be at least 1, not {parallel}")
    run_settings = settings.resolve(c.config, inventory_path)
    try:
        environment = inventory.load(env or "", run_settings.inventory)
        if limit:
            environment = environment.limited([n.strip() for n in limit.split(",") if n.strip()])
        inventory.check_needs(environment, needs)
    except InventoryError as exc:
        raise Exit(str(exc)) from None
    base = _log_base(run_settings.logs_dir, f"{log}-{environment.name}") if log else None
    try:
        log_file = open_private(Path(f"{base}.log")) if base else None
    except LocalFileError as exc:
        raise Exit(str(exc)) from None
    run = Run(environment, dry_run=dry_run, parallel=parallel, pool=Pool(accept_new_host_keys),
              reporter=Reporter(dry_run=dry_run, log=log_file), settings=run_settings, log_base=base)
    try:
        yield run
    except InventoryError as exc:
        raise Exit(str(exc)) from None
    finally:
        run.pool.close()
        if run.reporter.results:
            run.reporter.write(run.reporter.recap(f"{title} ({environment.name}{', dry run' if dry_run else ''})"))
        if log_file:
            log_file.close()
    if run.failed:
        raise Exit(code=1)


def _log_base(logs: Path, stem: str) -> Path:
    """A run's log path in `logs`, without suffix: STEM-TIME, then -2, -3... within a second."""
    base = first = logs / f"{stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    for n in range(2, 100):
        if not Path(f"{base}.log").exists():
            break
        base = Path(f"{first}-{n}")
    return base


_COMMON = ("env", "limit", "dry_run", "parallel", "inventory", "accept_new_host_keys")


def host_task(title: str, *, name: str | None = None, changes: bool = True, help: dict | None = None,
              needs: Sequence[str] = (), log: str | None = None):
    """Make `body(run, **own)` an Invoke task that runs in a `session` (see there for `needs`
    and `log`). The task takes the body's own arguments (documented in `help`) and the common
    ones: --env, --limit, --parallel, --inventory, --accept-new-host-keys, and --dry-run where
    it `changes` anything."""
    def wrap(body: Callable[..., Any]):
        own = list(inspect.signature(body).parameters.values())[1:]
        keyword = inspect.Parameter.KEYWORD_ONLY
        common = [inspect.Parameter("env", keyword, default=None), *[p.replace(kind=keyword) for p in own],
                  *[inspect.Parameter(n, keyword, default=d) for n, d in
                    (("limit", None), ("dry_run", False), ("parallel", 10), ("inventory", None),
                     ("accept_new_host_keys", False)) if changes or n != "dry_run"]]

        def run_task(c: Context, **kwargs: Any) -> None:
            opts = {k: kwargs.pop(k) for k in _COMMON if k in kwargs}
            with session(c, opts["env"], title, limit=opts["limit"], dry_run=opts.get("dry_run", False),
                         parallel=opts["parallel"], inventory_path=opts["inventory"],
                         accept_new_host_keys=opts["accept_new_host_keys"], needs=needs, log=log) as run:
                body(run, **kwargs)

        run_task.__signature__ = inspect.Signature(
            [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD), *common])
        run_task.__doc__, run_task.__name__, run_task.__module__ = body.__doc__, body.__name__, body.__module__
        return task(name=name, klass=Task, help={**(HELP if changes else READ_HELP), **(help or {})})(run_task)
    return wrap
