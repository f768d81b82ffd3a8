"""Result lines, the recap table and command quoting, without any host."""
import io

from fabfile.inventory import Host
from fabfile.remote import command, script
from fabfile.results import Reporter, Result, Status


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
    assert rep.failed


def test_dry_run_says_would_change():
    out = io.StringIO()
    rep = Reporter(dry_run=True, stream=out)
    rep.emit(Result("n1", "s", Status.CHANGED))
    assert "n1 | s | would change" in out.getvalue()
    assert "WOULD CHANGE" in rep.recap("s")
    assert not rep.failed


def test_commands_are_quoted_word_by_word_and_sudo_only_where_asked():
    argv = ["cat", "/etc/a file; rm -rf /"]
    assert command(host(True), argv, sudo=True) == "sudo -n -- cat '/etc/a file; rm -rf /'"
    assert command(host(False), argv, sudo=True) == "cat '/etc/a file; rm -rf /'"
    assert command(host(True), argv, sudo=False) == "cat '/etc/a file; rm -rf /'"
    assert script("echo \"$1\"", "x y") == ["sh", "-c", "echo \"$1\"", "sh", "x y"]
