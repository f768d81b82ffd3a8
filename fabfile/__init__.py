"""binderhub-ops: the BinderHub-on-bare-metal runbook as Invoke tasks run over SSH."""
from __future__ import annotations

import importlib
from typing import Any, Iterable

from invoke import Collection

from . import settings

#: The task modules: those whose one task sits at the root (named as the module), then those
#: whose tasks go under the module's name (`helm.upgrade`).
ROOT_TASKS = ("deploy", "smoke", "status", "diagnose", "rollback")
GROUPS = ("cluster", "nodes", "helm", "metallb", "nginx", "secrets")
#: Collections mounted a second time under an older name: `docker.mirror` is `nodes.mirror`.
ALIASES = {"docker": "nodes"}


def collection(names: Iterable[str] | None = None) -> Collection:
    """The tasks' namespace; with `names` (what a command line names), only the task modules
    those names need, so that a command imports what it uses. Names that are no task are
    ignored; when none is a task, the whole namespace."""
    wanted = None if names is None else {n.split(".")[0] for n in names}
    modules = [m for m in (*ROOT_TASKS, *GROUPS)
               if wanted is None or m in wanted or any(ALIASES.get(w) == m for w in wanted)]
    ns = Collection()
    ns.configure(settings.DEFAULTS)
    for name in modules or (*ROOT_TASKS, *GROUPS):
        module = importlib.import_module(f".{name}", __name__)
        if name in ROOT_TASKS:
            ns.add_task(getattr(module, name))
            continue
        ns.add_collection(Collection.from_module(module), name=name)
        for alias in (a for a, of in ALIASES.items() if of == name):
            ns.add_collection(Collection.from_module(module), name=alias)
    return ns


def __getattr__(name: str) -> Any:
    """`fabfile.ns`: the whole namespace, made on first use."""
    if name == "ns":
        globals()["ns"] = collection()
        return globals()["ns"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
