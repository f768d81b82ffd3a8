"""Remote commands built from quoted argv words, and safe remote file reads and writes."""
from __future__ import annotations

import difflib
import io
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from fabric import Connection
from invoke.exceptions import CommandTimedOut
from invoke.runners import Result as CommandResult

from .inventory import Host

BACKUPS_KEPT = 5


class RemoteError(Exception):
    """A remote command failed; the message holds its exit code and the end of its stderr."""


def command(host: Host, argv: Sequence[str], sudo: bool) -> str:
    """The shell line for `argv`, every word quoted, behind `sudo -n` when the host needs it."""
    prefix = ["sudo", "-n", "--"] if sudo and host.sudo else []
    return shlex.join([*prefix, *argv])


def script(text: str, *args: str) -> list[str]:
    """argv running a fixed POSIX sh script; values travel as positional arguments."""
    return ["sh", "-c", text, "sh", *args]


def run(conn: Connection, host: Host, argv: Sequence[str], *, sudo: bool = True,
        check: bool = True, timeout: float | None = None, stdin: str | None = None) -> CommandResult:
    """Run `argv` on `host`, feeding it `stdin` if given (the way to hand a secret to a command:
    never on its command line, never in a file on the host); raise RemoteError on a non-zero
    exit when `check`."""
    try:
        result = conn.run(command(host, argv, sudo), hide=True, warn=True,
                          in_stream=_Stdin(stdin) if stdin is not None else False,
                          timeout=timeout or host.command_timeout)
    except CommandTimedOut as exc:
        raise RemoteError(f"`{argv[0]}` timed out after {exc.timeout:g} s") from None
    if check and result.failed:
        raise RemoteError(f"`{argv[0]}` exited {result.exited}: {tail(result.stderr or result.stdout)}")
    return result


class _Stdin(io.StringIO):
    """A command's stdin handed over in one piece: Invoke asks a non-terminal stream for one
    byte at a time, 10 ms apart (a 3 kB values document would take 30 s)."""

    def read(self, size: int | None = -1) -> str:
        return super().read()


def file_diff(old: str | None, new: str, path: str) -> str:
    """A unified diff of a file's text (old None: the file does not exist yet)."""
    return "".join(difflib.unified_diff((old or "").splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=path if old is not None else "/dev/null", tofile=path))


def service(conn: Connection, host: Host, manager: str, name: str, action: str) -> None:
    """start/restart/reload a service through its manager: systemd, or sysvinit's `service`."""
    run(conn, host, ["systemctl", action, name] if manager == "systemd" else ["service", name, action])


_AWAIT = r'''tries=$1 daemon=$2 log=$3; shift 3
i=0
while [ "$i" -lt "$tries" ]; do
    if out=$("$@" 2>/dev/null); then printf '%s\n' "$out"; exit 0; fi
    if [ "$i" -ge 4 ] && ! pidof "$daemon" >/dev/null 2>&1; then
        echo "$daemon exited instead of starting" >&2
        [ -r "$log" ] && tail -n 1 "$log" >&2
        exit 1
    fi
    sleep 0.5; i=$((i + 1))
done
echo "$daemon did not answer '$*' within $((tries / 2)) s" >&2; exit 1
'''


def await_daemon(conn: Connection, host: Host, daemon: str, log: str, argv: Sequence[str], seconds: int) -> str:
    """`argv`'s output once it succeeds (tried every 0.5 s for `seconds`, while the process `daemon`
    runs); RemoteError with why not: the daemon exited (the last line of `log`) or never answered."""
    done = run(conn, host, script(_AWAIT, str(seconds * 2), daemon, log, *argv), check=False, timeout=seconds + 30)
    if done.failed:
        raise RemoteError(tail(done.stderr))
    return done.stdout


def tail(text: str, lines: int = 3) -> str:
    """The last lines of command output, joined on one line."""
    return " / ".join(text.strip().splitlines()[-lines:]) or "(no output)"


@dataclass(frozen=True)
class Output:
    """What one command of `run_many` did."""

    exited: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exited == 0


_MANY = r'''d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
{jobs}
wait
for f in "$d"/*.rc; do
    i=${{f%.rc}}
    printf '\036%s %s\n' "${{i##*/}}" "$(cat "$f")"; cat "$i.out"; printf '\037'; cat "$i.err"
done
'''


def run_many(conn: Connection, host: Host, commands: Mapping[str, Sequence[str]], *,
             sudo: bool = False) -> dict[str, Output]:
    """Run several read-only commands at once on the host, in one round trip. Their output
    passes through files in a temp directory on the host: never use it for a command whose
    output holds a secret (run it alone with `run`: its output streams back)."""
    names = list(commands)
    jobs = "\n".join(f'{{ {shlex.join(argv)} >"$d/{i}.out" 2>"$d/{i}.err" </dev/null; echo $? >"$d/{i}.rc"; }} &'
                     for i, argv in enumerate(commands.values()))
    out = run(conn, host, script(_MANY.format(jobs=jobs)), sudo=sudo).stdout
    results = {}
    for record in out.split("\036")[1:]:
        head, _, rest = record.partition("\n")
        index, code = head.split()
        stdout, _, stderr = rest.partition("\037")
        results[names[int(index)]] = Output(int(code), stdout, stderr)
    return results


_READ = 'test -e "$1" || exit 3; cat -- "$1"'


def read(conn: Connection, host: Host, path: str) -> str | None:
    """The text of a remote file, or None when it does not exist."""
    result = run(conn, host, script(_READ, path), check=False)
    if result.exited == 3:
        return None
    if result.failed:
        raise RemoteError(f"cannot read {path}: {tail(result.stderr)}")
    return result.stdout


_INSTALL = r'''set -eu
tmp=$1 path=$2 mode=$3 backup=$4 keep=$5
dir=$(dirname -- "$path") name=$(basename -- "$path")
mkdir -p -- "$dir"
if [ -e "$path" ]; then
    cp -p -- "$path" "$backup"
    echo "$backup"
    ls -1t -- "$path".bhops-*.bak | tail -n +$((keep + 1)) | xargs -r rm -f --
fi
install -m "$mode" -o root -g root "$tmp" "$dir/.$name.bhops-new"
mv -f -- "$dir/.$name.bhops-new" "$path"
'''

Validator = Callable[[str], Sequence[str]]


def write(conn: Connection, host: Host, path: str, content: str, mode: str = "0644",
          validate: Validator | None = None) -> str | None:
    """Replace a remote file atomically: upload to a private temp file, validate it, back up
    the old file, install beside the target and rename over it. Returns the backup's path."""
    tmp = run(conn, host, ["mktemp", "/tmp/bhops.XXXXXXXX"], sudo=False).stdout.strip()
    try:
        conn.put(io.BytesIO(content.encode()), remote=tmp)
        if validate:
            run(conn, host, validate(tmp))
        backup = f"{path}.bhops-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.bak"
        out = run(conn, host, script(_INSTALL, tmp, path, mode, backup, str(BACKUPS_KEPT))).stdout
        return out.strip() or None
    finally:
        run(conn, host, ["rm", "-f", "--", tmp], sudo=False, check=False)


_RESTORE = r'''set -eu
path=$1 backup=$2
if [ -z "$backup" ]; then rm -f -- "$path"; exit 0; fi
cp -p -- "$backup" "$path.bhops-restore"
mv -f -- "$path.bhops-restore" "$path"
'''


def restore(conn: Connection, host: Host, path: str, backup: str | None) -> None:
    """Put `backup` back in place of `path` atomically (no backup: the file did not exist)."""
    run(conn, host, script(_RESTORE, path, backup or ""))


_PRIVATE_FILES = 'umask 077; dir=$1; shift; for f in "$@"; do : > "$dir/$f"; done'


@contextmanager
def private_files(conn: Connection, host: Host, files: Mapping[str, str]) -> Iterator[str]:
    """Upload `files` (name: text) into a fresh 0700 directory of 0600 files owned by the login
    user; yield the directory, and remove it afterwards (a dropped connection leaves it behind,
    so never put a secret there: hand it to the command on stdin)."""
    directory = run(conn, host, ["mktemp", "-d", "/tmp/bhops.XXXXXXXX"], sudo=False).stdout.strip()
    try:
        run(conn, host, script(_PRIVATE_FILES, directory, *files), sudo=False)
        for name, text in files.items():
            conn.put(io.BytesIO(text.encode()), remote=f"{directory}/{name}")
        yield directory
    finally:
        run(conn, host, ["rm", "-rf", "--", directory], sudo=False, check=False)
