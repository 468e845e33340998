"""Configuration validation: defaults filled in, typos and wrong types named by key."""

import pytest
import yaml

from modalmerge.config import SCHEMA_PATH, load_config, merge_config, validate_config
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
    ({"prep": {"detrnd": True}}, "prep", "unknown key 'detrnd' (did you mean 'detrend'?)"),
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
    schema = yaml.safe_load(SCHEMA_PATH.read_text())

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}{key} lacks a description"
            if path.startswith("data.custom."):
                continue  # the custom block is all-or-nothing: its keys are required, not defaulted
            assert "default" in sub, f"{path}{key} lacks a default"
            walk(sub, f"{path}{key}.")

    walk(schema, "")


# every word a property's schema may use; anything else is a description split by an unquoted comma
SCHEMA_KEYWORDS = {"type", "description", "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                   "enum", "items", "properties", "additionalProperties", "oneOf", "anyOf", "required", "minItems",
                   "maxItems", "const", "pattern"}


def test_schema_properties_use_only_schema_keywords():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    bogus = []

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            bogus.extend(f"{path}{key}: {word!r}" for word in sub if word not in SCHEMA_KEYWORDS)
            walk(sub, f"{path}{key}.")
        for option in node.get("oneOf", []) + node.get("anyOf", []):
            walk(option, path)

    walk(schema, "")
    assert not bogus, f"not schema keywords (an unquoted comma in a description?): {bogus}"


def test_a_typo_names_the_key_and_the_closest_match_not_the_schema():
    with pytest.raises(ModalMergeInputError) as err:
        validate_config({"train": {"lerning_rate": 1e-3}})
    message = str(err.value)
    assert "unknown key 'lerning_rate' (did you mean 'learning_rate'?)" in message
    assert "allowed keys here:" in message and len(message.splitlines()) < 5


def test_the_gpu_overlay_is_a_valid_config_over_the_default():
    """profiles/gpu_temporal.yaml merges into config.yaml as Snakemake merges --configfile (key by key)."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    config = validate_config(merge_config(base, yaml.safe_load((REPO / "profiles" / "gpu_temporal.yaml").read_text())))
    assert config["model"]["temporal_levels"] == [0, 1, 2, 3] and config["sample"]["overlap"] == 2
    assert config["train"]["validation_runs"] == [9] and config["model"]["channels"] == base["model"]["channels"]


@pytest.mark.parametrize("variants", sorted(p.name for p in (REPO / "bench").glob("ablation*.yaml")))
def test_every_ablation_variant_is_a_valid_config_over_the_default(variants):
    """A variant that fails validation would only be found on a lent GPU, minutes into its budget."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    overlays = yaml.safe_load((REPO / "bench" / variants).read_text())
    assert overlays
    for name, overlay in overlays.items():
        overlay = {k: v for k, v in (overlay or {}).items() if k != "reuse_model_of"}
        validate_config(merge_config(base, overlay))


@pytest.mark.parametrize("change, message", [
    ({"sample": {"overlap": 8}}, "sample.overlap"),
    ({"train": {"validation_runs": [11]}}, "train.validation_runs"),
    ({"sample": {"variance": "large", "eta": 0.0}}, "sample.variance"),
    ({"sample": {"variance": "small", "posterior_frames": "correlated"}}, "sample.posterior_frames"),
])
def test_keys_that_must_agree_with_each_other_are_checked(change, message):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for block, values in change.items():
        config[block].update(values)
    with pytest.raises(ModalMergeInputError, match=message):
        validate_config(config)
