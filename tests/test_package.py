"""The product as a package: the wheel holds the product and its templates, nothing of the lab,
and the `bhops` command it installs works from a directory outside the checkout."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

TEMPLATES = sorted(p.name for p in (REPO / "templates").glob("*.j2"))
#: Not part of the product; left out of the copy the wheel is built from.
NOT_SOURCE = (".venv", ".git", ".tools", ".lab", "build", "*.egg-info", "__pycache__", ".pytest_cache",
              "logs", "diagnostics", "secrets")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the checkout (so that no build/ is left in it)."""
    source = tmp_path_factory.mktemp("source") / "binderhub-ops"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out), str(source)], check=True, capture_output=True, timeout=300)
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; its dependencies are this venv's (a .pth file)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    return venv


@pytest.fixture
def bhops(venv, tmp_path):
    """Run `bhops ARGS...` in `cwd` (default: an empty temp directory outside the checkout), with
    none of the BHOPS_* variables unless given; (exit code, stdout+stderr)."""
    def run(*args: str, cwd: Path = tmp_path, env: dict[str, str] | None = None) -> tuple[int, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BHOPS_") and k != "PYTHONPATH"}
        proc = subprocess.run([str(venv / "bin" / "bhops"), *args], cwd=cwd, env={**clean, **(env or {})},
                              capture_output=True, text=True, timeout=600)
        return proc.returncode, proc.stdout + proc.stderr
    return run


def test_the_wheel_holds_the_product_with_its_templates_and_nothing_of_the_lab(wheel):
    with zipfile.ZipFile(wheel) as whl:
        entries = {i.filename: i for i in whl.infolist()}
        for name in TEMPLATES:
            entry = entries[f"fabfile/templates/{name}"]
            assert stat.S_ISREG(entry.external_attr >> 16), f"{name} is not a plain file in the wheel"
            assert whl.read(entry) == (REPO / "templates" / name).read_bytes()
    tops = {name.split("/")[0] for name in entries if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"fabfile"}, f"the wheel holds more than the product: {sorted(tops)}"
    assert not [n for n in entries if n.startswith("fabfile/lab")]


def test_the_installed_package_renders_its_templates_from_itself(venv, tmp_path):
    code = ("from fabfile import rendering; "
            "print(rendering.TEMPLATES); print(sorted(rendering.environment.list_templates()))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout
    where, names = out.splitlines()
    assert Path(where).is_relative_to(venv) and names == repr(TEMPLATES)


def test_bhops_shows_its_version_and_tasks_from_anywhere(bhops):
    code, out = bhops("--version")
    assert code == 0 and out.strip() == "binderhub-ops 0.1.0"
    code, out = bhops("--list")
    assert code == 0, out
    listed = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert {"deploy", "status", "rollback", "diagnose", "smoke", "helm.values", "docker.mirror"} <= listed
    assert not [t for t in listed if t.startswith("lab")]


def test_bhops_finds_the_inventory_by_flag_environment_or_here(bhops, tmp_path):
    """A wrong --env names the inventory file that was read: that shows which one it was."""
    for where in ("here", "flag", "env", "config"):
        (tmp_path / where).mkdir()
        (tmp_path / where / "hosts.yaml").write_text("environments: {%s: {hosts: {h: {roles: [node]}}}}\n" % where)
    (tmp_path / "here" / "bhops.yaml").write_text(f"inventory: {tmp_path / 'config' / 'hosts.yaml'}\n")
    assert "valid environments: config" in bhops("docker.status", "--env", "x", cwd=tmp_path / "here")[1]
    (tmp_path / "here" / "bhops.yaml").unlink()
    code, out = bhops("docker.status", "--env", "x", cwd=tmp_path / "here")
    assert code == 1 and out.startswith(f"{tmp_path / 'here' / 'hosts.yaml'}: unknown environment 'x'"), out
    code, out = bhops("docker.status", "--env", "x", cwd=tmp_path / "here",
                      env={"BHOPS_INVENTORY": str(tmp_path / "env" / "hosts.yaml")})
    assert code == 1 and "valid environments: env" in out, out
    code, out = bhops("docker.status", "--env", "x", "--inventory", str(tmp_path / "flag" / "hosts.yaml"),
                      cwd=tmp_path / "here", env={"BHOPS_INVENTORY": str(tmp_path / "env" / "hosts.yaml")})
    assert code == 1 and "valid environments: flag" in out, out

