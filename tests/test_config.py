"""The config tree: presets, JSON round trip, validation (references: the values the CLI's --fast
flag set by hand before presets existed; json's own parser)."""

import json

import pytest

from facegcn.config import Config
from facegcn.errors import ConfigError


def test_fast_preset_steps():
    c = Config.preset("fast")
    assert (c.coarse.steps_rigid, c.coarse.steps_landmark, c.coarse.steps_photo, c.coarse.steps_identity) == (30, 60, 40, 0)
    assert c.refine.steps == 10  # half the default's 20 (the photo start converges fast)
    assert Config.preset("default") == Config()


def test_presets_are_independent_copies():
    a = Config.preset("fast")
    a.refine.steps = 1
    assert Config.preset("fast").refine.steps == 10


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


def test_device_and_formats_are_checked_with_clear_messages():
    c = Config()
    c.device = "gpu"
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        c.validate()
    for ok in ("cpu", "cuda", "cuda:1"):
        c.device = ok
        c.validate()
    c.output.formats = ()
    with pytest.raises(ConfigError, match="no output format given"):
        c.validate()
    c.output.formats = ("stl", "obj")
    with pytest.raises(ConfigError, match="unknown output format.*'stl'"):
        c.validate()
    c.output.formats = ("obj",)
    c.output.photo_filter = "lanczos"
    with pytest.raises(ConfigError, match="unknown photo filter 'lanczos'"):
        c.validate()
    c.output.photo_filter = "bicubic"
    for bad in (-0.1, 1.5):
        c.output.delight = bad
        with pytest.raises(ConfigError, match="output.delight must be between 0"):
            c.validate()
    c.output.delight = 1.0
    c.validate()


def test_config_file_gives_defaults_typed_options_override(tmp_path):
    from facegcn.cli.configure import merged_config

    f = tmp_path / "config.json"
    f.write_text(json.dumps({"output": {"texture_size": 256}, "coarse": {"steps_rigid": 3}}))
    values = {"config_file": f, "fmt": "glb", "texture_size": 1024, "detector": "dlib", "refine": True, "quiet": False}
    cfg = merged_config(f, values, typed={"fmt"})
    assert cfg.output.formats == ("glb",)  # typed: wins
    assert cfg.output.texture_size == 256 and cfg.coarse.steps_rigid == 3  # the file's, not the flag defaults
    assert cfg.coarse.steps_landmark == Config().coarse.steps_landmark  # what the file does not name: defaults
    assert merged_config(f, values, typed={"texture_size"}).output.texture_size == 1024
    # --delight lands in output.delight, typed over a file's value
    f.write_text(json.dumps({"output": {"delight": 0.25}}))
    assert merged_config(f, dict(values, delight=1.0), typed=set()).output.delight == 0.25
    assert merged_config(f, dict(values, delight=1.0), typed={"delight"}).output.delight == 1.0
    assert merged_config(None, dict(values, delight=0.75), typed={"delight"}).output.delight == 0.75
    fast = merged_config(f, {**values, "fast": True}, typed={"fast"})
    assert fast.coarse.steps_rigid == Config.preset("fast").coarse.steps_rigid
