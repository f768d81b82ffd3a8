"""daemon.json merging and the reload-or-restart decision, without any host."""
import pytest

from fabfile import daemon_config as dj


def test_merge_keeps_every_other_key_in_place():
    current = dj.parse('{"log-driver": "json-file", "registry-mirrors": ["https://old.example.org"], "debug": true}')
    merged = dj.merge(current, ("https://dockerhub.stfc.ac.uk",))
    assert list(merged) == ["log-driver", "registry-mirrors", "debug"]
    assert merged["registry-mirrors"] == ["https://dockerhub.stfc.ac.uk"]
    assert merged["log-driver"] == "json-file" and merged["debug"] is True


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_absent_or_empty_file_holds_no_settings(text):
    assert dj.parse(text) == {}


@pytest.mark.parametrize("text, message", [
    ('{"log-driver": "json-file",', "not valid JSON"),
    ('["registry-mirrors"]', "holds a JSON list, not an object"),
])
def test_unparsable_file_is_refused_with_a_fix(text, message):
    with pytest.raises(dj.DaemonJsonError, match=message) as err:
        dj.parse(text)
    assert "left untouched" in str(err.value)


def test_mirrors_alone_reload_but_other_keys_restart():
    old = {"log-driver": "json-file"}
    assert not dj.needs_restart(old, dj.merge(old, ["https://m.example.org"]))
    assert dj.needs_restart(old, {"log-driver": "journald"})
    assert dj.changed_keys({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {"b", "c"}


def test_reported_mirrors_compare_without_the_trailing_slash():
    assert dj.same_mirrors(["https://m.example.org/"], ["https://m.example.org"])
    assert not dj.same_mirrors([], ["https://m.example.org"])
    assert not dj.same_mirrors(None, ["https://m.example.org"])


def test_render_round_trips_and_diff_names_the_file():
    settings = {"registry-mirrors": ["https://m.example.org"]}
    text = dj.render(settings)
    assert dj.parse(text) == settings and text.endswith("\n")
    patch = dj.diff('{"debug": true}\n', text)
    assert "+++ /etc/docker/daemon.json" in patch and '-{"debug": true}' in patch
