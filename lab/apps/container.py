"""The start of one container the lab's kubelet plays: `python lab/apps/container.py SPEC ARGV...`.

What a container runtime does before it executes the container's process (the OCI runtime spec's
`linux.namespaces`, `mounts`, `process.cwd`, `process.user`:
https://github.com/opencontainers/runtime-spec/blob/main/config.md), for the part the lab can do
without an image: it joins the pod's network namespace (`netns`, a path such as /run/netns/NAME),
enters a mount namespace of its own whose mounts do not propagate back to the host
(`unshare(CLONE_NEWNS)`, then `/` made recursively private), bind-mounts each of `mounts` (`source`
on the host, `target` in the container, `readOnly`) creating missing mountpoints (a directory, or an
empty file when the source is a file; on a lab host that lands in the host's private layers),
changes to `workingDir` (made, owned by the user, when missing), takes the `user` (`uid`, `gid`,
supplementary `groups`: the securityContext's runAsUser, runAsGroup, fsGroup and supplementalGroups)
and executes ARGV with the environment it was given. SPEC is a JSON file the runner wrote (no
secrets in it: paths only). Anything that fails exits 128 with the reason on stderr, as a runtime's
`StartError`.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
           f"mount {source or ''} {target}")


def _mountpoint(source: Path, target: Path) -> None:
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    elif not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


def enter(spec: dict) -> None:
    """Join the network namespace, mount, change directory (see the module docstring)."""
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY)
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {spec['netns']}")
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    for mount in spec.get("mounts") or []:
        source, target = Path(mount["source"]), Path(mount["target"])
        _mountpoint(source, target)
        _mount(str(source), str(target), MS_BIND | MS_REC)
        if mount.get("readOnly"):
            _mount(None, str(target), MS_BIND | MS_REMOUNT | MS_RDONLY)
    user = spec.get("user") or {}
    workdir = spec.get("workingDir")
    if workdir:
        if not Path(workdir).exists():
            Path(workdir).mkdir(parents=True)
            os.chown(workdir, user.get("uid", 0), user.get("gid", 0))  # as the image's own layer has it
        os.chdir(workdir)
    if user:
        os.setgroups(user.get("groups") or [])
        os.setgid(user.get("gid", 0))
        os.setuid(user["uid"])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python lab/apps/container.py SPEC ARGV...", file=sys.stderr)
        return 2
    try:
        enter(json.loads(Path(argv[0]).read_text()))
        os.execvp(argv[1], argv[1:])
    except OSError as exc:
        print(f"lab container: StartError: {exc}", file=sys.stderr)
        return 128
    return 128  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
