"""params.yaml is validated at start, and errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidflow.config import ParamsError, load_params


def test_default_params_load_and_resolve_paths(workdir):
    params = load_params()
    assert params.world.size in params.world.sizes
    assert params.workdir == workdir.root
    assert params.data.path is None  # the world needs no folder
    amazon = load_params(overrides={"data.source": "amazon"})
    assert amazon.data.path.is_absolute() and amazon.data.path.name == "amazon-beauty-2014-5core"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"world.bogus": 1}, "world.bogus: unknown key"),
        ({"world.size": "huge"}, "world.size 'huge' is not one of"),
        ({"world.seed": "abc"}, "world.seed: Input should be a valid integer"),
        ({"contracts.max_quarantine_fraction": 2}, "contracts.max_quarantine_fraction"),
        ({"data.source": "kafka"}, "data.source"),
        ({"data.source": "csv"}, "data.path must name the folder of the csv source"),
        ({"data.columns": "{uid: user}"}, "data.columns: ['uid'] are not canonical fields"),
    ],
)
def test_bad_setting_fails_naming_the_key(override, expected):
    with pytest.raises(ParamsError) as e:
        load_params(overrides=override)
    assert expected in str(e.value)


def test_bad_file_is_reported(tmp_path: Path):
    bad = tmp_path / "params.yaml"
    bad.write_text("world: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_cli_reports_bad_setting(capsys):
    from lifecycle.cli.main import main

    assert main(["--set", "world.size=huge", "params"]) == 2
    assert "world.size 'huge'" in capsys.readouterr().err


def test_overrides_from_the_environment(workdir, monkeypatch):
    """`sidflow serve --set k=v` hands its overrides to the BentoML process as $SIDFLOW_SET."""
    monkeypatch.setenv("SIDFLOW_SET", '{"serving.beam_size": "200", "world.size": "tiny"}')
    params = load_params()
    assert params.serving.beam_size == 200 and params.world.size == "tiny"
    assert load_params(overrides={"serving.beam_size": "30"}).serving.beam_size == 30
