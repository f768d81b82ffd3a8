"""The two wings: the product (`fabfile/`, the wheel) imports nothing from the lab (`lab/`), which
the checkout's `tasks.py` adds as `lab.*`."""
from __future__ import annotations

import ast
import configparser
import subprocess
import sys

from tests.conftest import REPO


def _imported(path) -> set[str]:
    """The absolute module names a file imports (".." for a relative import out of its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module if node.level == 0 else "fabfile" if node.level == 1 else "..")
    return names


def test_no_product_module_imports_the_lab():
    found = {f"{path.relative_to(REPO)}: {name}" for path in sorted((REPO / "fabfile").rglob("*.py"))
             for name in _imported(path) if name == ".." or name.split(".")[0] in ("lab", "labcluster", "labapps")}
    assert found == set()


def test_importing_the_product_loads_no_lab_module_and_the_wheel_holds_the_product_only():
    code = "import sys, fabfile; print(sorted(m for m in sys.modules if m.split('.')[0] == 'lab'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert setup["options"]["packages"].split() == ["fabfile"]


def test_the_checkout_adds_the_lab_tasks_beside_the_product_ones():
    from fabfile import ns
    assert "lab" not in ns.collections
    listed = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    assert {"lab.up", "lab.down", "lab.status", "deploy"} <= set(listed)


def test_the_lab_tasks_take_long_flags_only():
    from lab.tasks import ns
    assert sorted(ns.tasks) == ["down", "status", "up"]
    assert [name for task in ns.tasks.values() for arg in task.get_arguments() for name in arg.names
            if len(name) == 1] == []
