"""Private files on the operator's machine: secrets, logs, reports and bundles, each 0600 in a
0700 directory owned by the user, written atomically through a fresh temp file."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class LocalFileError(Exception):
    """A local file or directory cannot be used safely; the message says how to fix it."""


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can use: made 0700 if missing; refused when it is
    a symlink, someone else's, or open to others."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LocalFileError(f"cannot make directory {path}: {exc.strerror}") from None
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise LocalFileError(f"{path} must be a plain directory, not a symlink or a file; move it away")
    if info.st_uid != os.geteuid():
        raise LocalFileError(f"{path} belongs to uid {info.st_uid}, not to you; use a directory of your own")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LocalFileError(f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
                             f"run `chmod 700 {path}`")
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Replace `path` with `data`, mode 0600, in its private directory: written to a new temp
    file (O_CREAT|O_EXCL|O_NOFOLLOW, so a stale or planted file is never reused), synced, then
    renamed over `path`."""
    path = Path(path)
    private_dir(path.parent)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = _exclusive_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _exclusive_temp(path: Path) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{next(tempfile._get_candidate_names())}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise LocalFileError(f"cannot make a temp file beside {path}; clear the stale .{path.name}.*.tmp files")


def open_private(path: Path):
    """A new file `path` (mode 0600, in its private directory) open for writing text; refused
    when something is already there."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise LocalFileError(f"{path} already exists; move it away and re-run") from None
    return os.fdopen(fd, "w")
