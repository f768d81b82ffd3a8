"""The build stream parser on streams recorded from a real BinderHub, without any host."""
from pathlib import Path

import pytest

from fabfile.eventstream import Event, events, lines

STREAMS = Path(__file__).resolve().parent / "data" / "binderhub-streams"  # recorded from a real BinderHub


def recorded(name: str) -> bytes:
    """The body of a recorded HTTP response (after the blank line that ends the headers)."""
    raw = (STREAMS / name).read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[1]


def parse(chunks):
    return list(events(lines(chunks)))


def test_a_launch_parses_to_ready_with_url_and_token_and_keepalives():
    got = parse([recorded("launch-ready.txt")])
    phases = [e.phase for e in got if e]
    assert phases[0] == "waiting" and "building" in phases and phases.index("built") < phases.index("ready")
    ready = next(e for e in got if e and e.phase == "ready")
    assert ready.data["url"].endswith("/user/fake-repo-k7xsdh0d/") and ready.data["token"]
    assert got.count(None) >= 2  # the keepalive comments after ready
    assert "token" not in repr(ready)


@pytest.mark.parametrize("name, status, message", [
    ("no-accept-header.txt", 400, "Missing Accept header"),
    ("rate-limited.txt", 429, "Rate limit exceeded"),
    ("hub-unreachable.txt", 500, "Internal Server Error"),
    ("auth-no-token.txt", 403, "Forbidden"),
    ("auth-unknown-token.txt", 403, "Forbidden"),
    ("auth-token-in-url.txt", 403, "Forbidden"),
    ("auth-no-binder-scope.txt", 403, "user bob is not allowed."),
    ("auth-binder-service-token.txt", 403, "service binder is not allowed."),
    ("auth-user-has-server.txt", 409, "User alice already has a running server."),
    ("spawn-fails.txt", 500, "Spawn failed: h3 loopback: this spawn is refused"),
])
def test_failures_carry_status_and_message(name, status, message):
    failed = [e for e in parse([recorded(name)]) if e and e.failed]
    assert len(failed) == 1
    assert failed[0].data.get("status_code") == status and message in failed[0].message


def test_chunks_split_anywhere_give_the_same_events():
    body = recorded("launch-ready.txt")
    whole = parse([body])
    for size in (1, 7, 64):
        assert parse(body[i:i + size] for i in range(0, len(body), size)) == whole


def test_capitalised_unknown_and_malformed_events():
    stream = (b'data: {"phase": "Building", "message": "x"}\n\n'
              b'data: {"message": "no phase"}\n\n'
              b'data: not json\n\n'
              b': a comment\n'
              b'data: {"phase": "somethingnew"}\n\n'
              b'data: {"phase": "built", "imageName": "i"}\r\n\r\n'
              b'data: {"phase": "ready", "url": "u"}')
    got = parse([stream])
    assert [e.phase if e else None for e in got] == ["building", None, "somethingnew", "built", "ready"]
    assert got[0] == Event("building", "x", {"phase": "Building", "message": "x"})
    assert got[2].message == ""


def test_the_hubs_spawn_progress_comes_as_launching_events():
    launching = [e.message for e in parse([recorded("spawn-fails.txt")]) if e and e.phase == "launching"]
    assert launching[:5] == ["Launching server...\n", "Server requested\n", "Spawning server...\n",
                             "Spawn failed: h3 loopback: this spawn is refused\n",
                             "Launch attempt 1 failed, retrying...\n"]
    assert sum(m.startswith("Launch attempt") for m in launching) == 3
