"""Configuration validation: defaults filled in, typos and wrong types named by key."""

import pytest
import yaml

from modalmerge.config import load_config, validate_config
from modalmerge.errors import ModalMergeInputError

from conftest import REPO


def test_default_config_is_valid_and_complete():
    config = load_config(REPO / "config.yaml")
    assert config["data"]["source"] == "embedded"
    assert config["prep"]["split"]["test_runs"] == [10, 11, 12]


def test_empty_config_gets_every_default():
    config = validate_config({})
    assert config["prep"]["hemodynamic_shift_volumes"] == 0
    assert config["data"]["embedded"]["resolution"] == "1slice"


@pytest.mark.parametrize("bad,key,message", [
    ({"prep": {"detrnd": True}}, "prep", "'detrnd' was unexpected"),
    ({"data": {"source": "web"}}, "data.source", "is not one of"),
    ({"prep": {"split": {"test_runs": "10"}}}, "prep.split.test_runs", "is not of type 'array'"),
    ({"prep": {"hemodynamic_shift_volumes": -1}}, "prep.hemodynamic_shift_volumes", "less than the minimum"),
    ({"train": {"processes": 0}}, "train.processes", "expected: Data-parallel training processes"),
    ({"train": {"processes": "all"}}, "train.processes", "auto = one per GPU"),
])
def test_config_errors_name_the_key(bad, key, message):
    with pytest.raises(ModalMergeInputError) as err:
        validate_config(bad)
    assert f"config key '{key}'" in str(err.value) and message in str(err.value)


def test_every_schema_key_has_a_description_and_a_default():
    schema = yaml.safe_load((REPO / "config.schema.yaml").read_text())

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}{key} lacks a description"
            if path.startswith("data.custom."):
                continue  # the custom block is all-or-nothing: its keys are required, not defaulted
            assert "default" in sub, f"{path}{key} lacks a default"
            walk(sub, f"{path}{key}.")

    walk(schema, "")
