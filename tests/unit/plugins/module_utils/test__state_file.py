"""Unit tests of the atomic state file."""

import os
import stat

import pytest

from ansible_collections.opendove.mailserver.plugins.module_utils import _state_file as sf


def test_missing_file_loads_as_none(tmp_path):
    assert sf.load_json(str(tmp_path / "absent.json")) is None


@pytest.mark.parametrize("content, message", [("{not json", "cannot be read as JSON"), ("[1, 2]", "not a JSON object")])
def test_corrupt_file_is_an_error(tmp_path, content, message):
    path = tmp_path / "ring.json"
    path.write_text(content)
    with pytest.raises(sf.StateFileError, match=message):
        sf.load_json(str(path))


def test_save_writes_with_mode_and_replaces_whole(tmp_path):
    path = str(tmp_path / "ring.json")
    sf.save_json(path, {"a": 1}, mode=0o640)
    sf.save_json(path, {"b": 2}, mode=0o600)
    assert sf.load_json(path) == {"b": 2}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["ring.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / "ring.json")
    sf.save_json(path, {"a": 1})
    with pytest.raises(TypeError):
        sf.save_json(path, {"b": object()})

    def crash(*_):
        raise OSError("disk gone")

    monkeypatch.setattr(sf.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        sf.save_json(path, {"c": 3})
    monkeypatch.undo()
    assert sf.load_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["ring.json"]
