"""BinderHub's build event stream (text/event-stream): framing, events, phases."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Iterator


@dataclass(frozen=True)
class Event:
    """One `data:` event; `phase` lower-cased (BinderHub's phases are compared that way)."""

    phase: str
    message: str = ""
    data: dict = field(default_factory=dict, repr=False)  # `ready` holds the server's token

    @property
    def failed(self) -> bool:
        return self.phase in ("failed", "failure")


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text lines from byte chunks split anywhere (inside a line or a UTF-8 character)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def events(text_lines: Iterable[str]) -> Iterator[Event | None]:
    """Events from the stream's lines; None for each comment (a `:keepalive` says the stream is
    alive). `data:` lines up to a blank line make one event; what is not JSON with a `phase` is
    skipped, as BinderHub's own client does."""
    data: list[str] = []
    for line in text_lines:
        if line.startswith(":"):
            yield None
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            event = _event("\n".join(data))
            data = []
            if event:
                yield event
    if data and (event := _event("\n".join(data))):
        yield event


def _event(payload: str) -> Event | None:
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("phase"), str):
        return None
    return Event(data["phase"].lower(), str(data.get("message") or ""), data)
