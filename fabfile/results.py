"""Per-host step results, printed live one line each, and the recap table that ends a run."""
from __future__ import annotations

import base64
import json
import re
import sys
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Iterable, TextIO
from urllib.parse import quote, quote_plus

MASK = "********"
_B64 = "A-Za-z0-9+/_-"  # both base64 alphabets


def encoded_forms(value: str) -> set[str]:
    """The forms a secret takes in what tools print: as is, JSON-escaped (as Python and Go
    write it), URL-encoded (either case of hex, `+` or `%20` for a space), and base64 (a
    Kubernetes Secret's data)."""
    py = json.dumps(value)[1:-1]
    go = py.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    url = {quote(value, safe=""), quote(value), quote_plus(value)}
    url |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), u) for u in url}
    raw = value.encode()
    return {value, py, json.dumps(value, ensure_ascii=False)[1:-1], go, *url,
            base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}


def base64_cores(value: str, depth: int = 2) -> set[str]:
    """What base64 text shows of `value` wherever it sits inside the encoded data (a values
    file or a docker config in a Secret): at each of the three alignments, the characters
    only its bytes decide; down to `depth` levels of base64 in base64. Compressed or
    encrypted data (helm's release records) hides it from any search."""
    raw, cores = value.encode(), set()
    for shift in range(3):
        body = raw[shift:len(raw) - (len(raw) - shift) % 3]
        if len(body) >= 6:  # 8 characters or more: no chance match in other data
            cores |= {base64.b64encode(body).decode(), base64.urlsafe_b64encode(body).decode()}
    return cores | {c for core in cores for c in base64_cores(core, depth - 1)} if depth > 1 else cores


def mask(text: str, forms: Iterable[str], cores: Iterable[str]) -> str:
    """`text` with each of `forms` masked, and each base64 core with the partial base64
    groups at its ends (they hold bits of the secret too)."""
    for form in forms:
        text = text.replace(form, MASK)
    for core in cores:
        if core in text:
            text = re.sub(f"[{_B64}]{{0,4}}{re.escape(core)}[{_B64}]{{0,4}}=*", MASK, text)
    return text


class Status(str, Enum):
    """What a step did on one host."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Result:
    """One host's outcome of one step; `diff` is shown under the line when given. A step
    returns it without host and step (`Result.ok(...)`): the run that called the step names
    them."""

    host: str
    step: str
    status: Status
    detail: str = ""
    diff: str = ""
    duration: float = 0.0  # seconds the step took on this host

    @classmethod
    def ok(cls, detail: str = "", diff: str = "") -> "Result":
        return cls("", "", Status.OK, detail, diff)

    @classmethod
    def changed(cls, detail: str = "", diff: str = "") -> "Result":
        return cls("", "", Status.CHANGED, detail, diff)

    @classmethod
    def failed(cls, detail: str = "", diff: str = "") -> "Result":
        return cls("", "", Status.FAILED, detail, diff)

    @classmethod
    def skipped(cls, detail: str = "", diff: str = "") -> "Result":
        return cls("", "", Status.SKIPPED, detail, diff)


@dataclass(frozen=True)
class Change:
    """A change a step decided to make, not yet made: what (`detail`, `diff`) and how
    (`apply`, which makes it and returns the outcome). The run applies it, or in a dry run
    reports it as what would change: the one place --dry-run is enforced."""

    detail: str
    apply: Callable[[], Result]
    diff: str = ""


def succeeded(results: Iterable[Result]) -> bool:
    """Whether no result failed or was unreachable."""
    return all(r.status not in (Status.FAILED, Status.UNREACHABLE) for r in results)


_COLORS = {Status.OK: "32", Status.CHANGED: "33", Status.FAILED: "31",
           Status.UNREACHABLE: "31", Status.SKIPPED: "36"}


class Mask:
    """The secret values of a run, masked in every form they take wherever text is shown or
    kept (printed lines, logs, reports, diagnostics)."""

    def __init__(self) -> None:
        self._forms: list[str] = []  # longest first, so no form is masked only in part
        self._cores: list[str] = []

    def hide(self, values: Iterable[str]) -> None:
        """Mask these values, and the forms they take once encoded, from now on."""
        values = [v for v in values if v]
        forms = {f for v in values for f in encoded_forms(v)} | set(self._forms)
        cores = {c for v in values for c in base64_cores(v)} | set(self._cores)
        self._forms = sorted(forms, key=len, reverse=True)
        self._cores = sorted(cores, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """`text` with every hidden value, in any of its encoded forms, replaced by the mask."""
        return mask(text, self._forms, self._cores)


class Reporter:
    """Prints results as they come (thread-safe), secrets masked, to the terminal and to the
    run's log when it has one, and keeps them for the recap."""

    def __init__(self, dry_run: bool = False, stream: TextIO | None = None, masked: Mask | None = None,
                 log: TextIO | None = None):
        self.dry_run = dry_run
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty()
        self.masked = masked or Mask()
        self.log = log  # a file that gets every line printed, uncoloured
        self.results: list[Result] = []  # for the recap
        self._lock = threading.Lock()

    def write(self, text: str, colored: str | None = None) -> None:
        """Print a line (coloured on a terminal) and log it (plain), secrets masked."""
        print(self.masked(colored or text), file=self.stream, flush=True)
        if self.log:
            print(self.masked(text), file=self.log, flush=True)

    def label(self, status: Status) -> str:
        """The word shown for a status: in a dry run, `changed` reads `would change`."""
        return "would change" if self.dry_run and status is Status.CHANGED else status.value

    def _paint(self, status: Status, text: str) -> str:
        return f"\033[{_COLORS[status]}m{text}\033[0m" if self.color else text

    def emit(self, result: Result) -> Result:
        """Record `result` and print it, with its diff indented under it."""
        def line(label: str) -> str:
            head = f"{result.host} | {result.step} | {label}" + (f" | {result.detail}" if result.detail else "")
            return "\n".join([head] + [f"{result.host} |   {d}" for d in result.diff.splitlines()])
        label = self.label(result.status)
        with self._lock:
            self.results.append(result)
            self.write(line(label), line(self._paint(result.status, label)))
        return result

    def note(self, host: str, text: str) -> None:
        """Print lines for a host that are not a result (progress, a table)."""
        with self._lock:
            self.write("\n".join(f"{host} | {line}" for line in text.splitlines()))

    def recap(self, title: str) -> str:
        """The PLAY RECAP-like table: one row per host, one column per status."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for r in self.results:
            counts[r.host][r.status] += 1
        headers = ["HOST"] + [self.label(s).upper() for s in Status]
        rows = [[host] + [str(c[s]) for s in Status] for host, c in counts.items()]
        return f"RECAP {title}\n" + table([headers] + rows, right_from=1)


def records(results: Iterable[tuple[str, Result]], masked: Callable[[str], str]) -> list[dict]:
    """(stage, result) pairs as dicts for a JSON report: stage, host, step, status, duration and
    detail, secrets masked."""
    return [{"stage": stage, "host": r.host, "step": r.step, "status": r.status.value,
             "duration": round(r.duration, 3), "detail": masked(r.detail)} for stage, r in results]


def table(rows: list[list[str]], right_from: int | None = None) -> str:
    """Rows as aligned columns two spaces apart; columns from `right_from` on (counts) are
    right-aligned, the others left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if right_from is not None and i >= right_from else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows)
