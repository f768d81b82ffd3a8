"""Result lines, the recap table and command quoting, without any host."""
import io
import re

from fabfile.inventory import Host
from fabfile.remote import command, script
from fabfile.results import Reporter, Result, Status, succeeded


def host(sudo):
    return Host("h", "h", "deploy", None, sudo, None, None, 10, 60, ("node",), {})


def test_lines_carry_the_host_and_the_recap_counts_per_host():
    out = io.StringIO()
    rep = Reporter(stream=out)
    rep.emit(Result("n1", "docker.mirror", Status.CHANGED, "docker restarted", "-a\n+b\n"))
    rep.emit(Result("n2", "docker.mirror", Status.UNREACHABLE, "cannot reach n2"))
    lines = out.getvalue().splitlines()
    assert lines == ["n1 | docker.mirror | changed | docker restarted", "n1 |   -a", "n1 |   +b",
                     "n2 | docker.mirror | unreachable | cannot reach n2"]
    recap = rep.recap("docker.mirror (lab)").splitlines()
    assert recap[1].split() == ["HOST", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED"]
    assert recap[2].split() == ["n1", "0", "1", "0", "0", "0"]
    assert recap[3].split() == ["n2", "0", "0", "0", "1", "0"]
    assert not succeeded(rep.results)


def test_dry_run_says_would_change():
    out = io.StringIO()
    rep = Reporter(dry_run=True, stream=out)
    rep.emit(Result("n1", "s", Status.CHANGED))
    assert "n1 | s | would change" in out.getvalue()
    assert "WOULD CHANGE" in rep.recap("s")
    assert succeeded(rep.results)


def test_commands_are_quoted_word_by_word_and_sudo_only_where_asked():
    argv = ["cat", "/etc/a file; rm -rf /"]
    assert command(host(True), argv, sudo=True) == "sudo -n -- cat '/etc/a file; rm -rf /'"
    assert command(host(False), argv, sudo=True) == "cat '/etc/a file; rm -rf /'"
    assert command(host(True), argv, sudo=False) == "cat '/etc/a file; rm -rf /'"
    assert script("echo \"$1\"", "x y") == ["sh", "-c", "echo \"$1\"", "sh", "x y"]


SECRET = "MARKER-5ec7e7-p@ss w/rd&<x>"


def test_masking_catches_the_encoded_forms_of_a_secret():
    import base64
    import json
    from urllib.parse import quote, quote_plus
    rep = Reporter(stream=io.StringIO())
    rep.masked.hide([SECRET])
    b64 = base64.b64encode(SECRET.encode()).decode()
    shown = {
        "plain": f"token {SECRET} end",
        "json": json.dumps({"token": SECRET}),
        "json (Go escapes <>&)": json.dumps(SECRET).replace("<", "\\u003c").replace(">", "\\u003e")
                                                  .replace("&", "\\u0026"),
        "url": f"?t={quote(SECRET, safe='')}&u={quote(SECRET)}&v={quote_plus(SECRET)}",
        "url, lowercase hex": "?t=" + re.sub("%..", lambda m: m.group().lower(), quote(SECRET, safe="")),
        "base64 (a Secret's data)": f"data:\n  password: {b64}\n",
        "base64 url-safe": base64.urlsafe_b64encode(SECRET.encode()).decode(),
    }
    for what, text in shown.items():
        masked = rep.masked(text)
        assert "MARKER" not in masked, f"{what}: {masked}"
        for form in (SECRET, b64, quote(SECRET, safe=""), quote_plus(SECRET)):
            assert form not in masked, f"{what}: {masked}"
        assert "********" in masked, what


def test_masking_catches_a_secret_inside_larger_base64_data():
    """A values file stored base64 in a Secret, and a docker config's `auth` (base64 of
    user:password) inside a base64 .dockerconfigjson: at every offset of the secret."""
    import base64
    import json
    token = "0123456789abcdef" * 4
    rep = Reporter(stream=io.StringIO())
    rep.masked.hide([token, SECRET])
    for prefix in ("", "a", "ab", "abc"):
        values_yaml = f"{prefix}hub:\n  services:\n    binder:\n      apiToken: {token}\nproxy: {{}}\n"
        masked = rep.masked(base64.b64encode(values_yaml.encode()).decode())
        assert "********" in masked
        decodable = masked.replace("********", "")
        assert token[2:-2] not in base64.b64decode(decodable + "===", validate=False).decode(errors="ignore")
        auth = base64.b64encode(f"{prefix}bot:{SECRET}".encode()).decode()
        config = base64.b64encode(json.dumps({"auths": {"r.example.org": {"auth": auth}}}).encode()).decode()
        masked = rep.masked(f"  .dockerconfigjson: {config}")
        assert "********" in masked and config not in masked


def test_masking_leaves_other_text_alone():
    rep = Reporter(stream=io.StringIO())
    rep.masked.hide(["0123456789abcdef" * 4])
    text = "pods ready 3/3; data: aGVsbG8gd29ybGQ=; url: http://h/a%20b?x=1+2"
    assert rep.masked(text) == text


def test_the_diagnostics_bundle_is_private_and_masked(tmp_path, monkeypatch):
    import base64
    import dataclasses
    import os
    import stat
    import tarfile

    import pytest

    from fabfile import diagnostics, inventory, localfiles
    from fabfile.session import Run
    from tests.test_secretfile import unreachable_inventory

    rep = Reporter(stream=io.StringIO())
    rep.masked.hide([SECRET])
    run = Run(inventory.load("t", unreachable_inventory(tmp_path)), reporter=rep)
    out = tmp_path / "diagnostics"
    out.mkdir()
    os.chmod(out, 0o755)
    run.settings = dataclasses.replace(run.settings, diagnostics_dir=out)
    encoded = base64.b64encode(SECRET.encode()).decode()
    with pytest.raises(localfiles.LocalFileError, match=rf"run `chmod 700 {out}`"):
        diagnostics.collect(run, f"http://127.0.0.1:1/{encoded}/")
    assert os.listdir(out) == []
    os.chmod(out, 0o700)
    bundle = diagnostics.collect(run, f"http://127.0.0.1:1/{encoded}/")
    assert bundle.parent == out and stat.S_IMODE(bundle.stat().st_mode) == 0o600
    with tarfile.open(bundle) as tar:
        texts = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    health = next(t for n, t in texts.items() if n.endswith("binder-health.txt"))
    assert "GET http://127.0.0.1:1/********/health" in health
    assert not [n for n, t in texts.items() if encoded in t or SECRET in t]


def test_stdin_for_a_remote_command_is_handed_over_in_one_piece():
    """Invoke asks a stream for one byte at a time, 10 ms apart: a values document must not
    take tens of seconds to reach helm."""
    from fabfile.remote import _Stdin
    document = "x" * 5000
    stream = _Stdin(document)
    assert stream.read(1) == document and stream.read(1) == ""
