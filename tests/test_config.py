"""The config tree: presets, JSON round trip, validation (references: the values the CLI's --fast
flag set by hand before presets existed; json's own parser)."""

import json

import pytest

from facegcn.config import Config
from facegcn.errors import ConfigError


def test_fast_preset_is_the_old_fast_flag():
    c = Config.preset("fast")
    assert (c.coarse.steps_rigid, c.coarse.steps_landmark, c.coarse.steps_photo, c.coarse.steps_identity) == (30, 60, 40, 0)
    assert c.refine.steps == 30
    assert Config.preset("default") == Config()


def test_presets_are_independent_copies():
    a = Config.preset("fast")
    a.refine.steps = 1
    assert Config.preset("fast").refine.steps == 30


def test_unknown_preset_and_bad_threads():
    with pytest.raises(ConfigError, match="unknown preset"):
        Config.preset("turbo")
    bad = Config()
    bad.threads = -3
    with pytest.raises(ConfigError, match="threads"):
        bad.validate()


def test_json_round_trip(tmp_path):
    c = Config.preset("fast")
    c.output.formats = ("glb",)
    p = tmp_path / "config.json"
    p.write_text(c.to_json())
    assert json.loads(p.read_text())["output"]["formats"] == ["glb"]
    assert Config.load(p) == c
    p.write_text('{"coarse": {"nope": 1}}')
    with pytest.raises(ConfigError, match="unknown option 'nope'"):
        Config.load(p)
