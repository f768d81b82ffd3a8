"""daemon.json merging and the reload-or-restart decision, without any host."""
import pytest

from fabfile import daemon_config


def test_merge_keeps_every_other_key_in_place():
    current = daemon_config.parse(
        '{"log-driver": "json-file", "registry-mirrors": ["https://old.example.org"], "debug": true}')
    merged = daemon_config.merge(current, ("https://dockerhub.stfc.ac.uk",))
    assert list(merged) == ["log-driver", "registry-mirrors", "debug"]
    assert merged["registry-mirrors"] == ["https://dockerhub.stfc.ac.uk"]
    assert merged["log-driver"] == "json-file" and merged["debug"] is True


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_absent_or_empty_file_holds_no_settings(text):
    assert daemon_config.parse(text) == {}


@pytest.mark.parametrize("text, message", [
    ('{"log-driver": "json-file",', "not valid JSON"),
    ('["registry-mirrors"]', "holds a JSON list, not an object"),
])
def test_unparsable_file_is_refused_with_a_fix(text, message):
    with pytest.raises(daemon_config.DaemonJsonError, match=message) as err:
        daemon_config.parse(text)
    assert "left untouched" in str(err.value)


def test_mirrors_alone_reload_but_other_keys_restart():
    old = {"log-driver": "json-file"}
    assert not daemon_config.needs_restart(old, daemon_config.merge(old, ["https://m.example.org"]))
    assert daemon_config.needs_restart(old, {"log-driver": "journald"})
    assert daemon_config.changed_keys({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {"b", "c"}


def test_reported_mirrors_compare_without_the_trailing_slash():
    assert daemon_config.same_mirrors(["https://m.example.org/"], ["https://m.example.org"])
    assert not daemon_config.same_mirrors([], ["https://m.example.org"])
    assert not daemon_config.same_mirrors(None, ["https://m.example.org"])


def test_render_round_trips_and_diff_names_the_file():
    settings = {"registry-mirrors": ["https://m.example.org"]}
    text = daemon_config.render(settings)
    assert daemon_config.parse(text) == settings and text.endswith("\n")
    patch = daemon_config.diff('{"debug": true}\n', text)
    assert "+++ /etc/docker/daemon.json" in patch and '-{"debug": true}' in patch
