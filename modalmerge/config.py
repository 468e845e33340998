"""Configuration: load config.yaml and validate it against the package's ``config.schema.yaml``, the
one place every key, its type and its default is stated (defaults filled in by one validator)."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import jsonschema
import yaml

from .errors import ModalMergeInputError

SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"


def _validator_with_defaults(schema: dict):
    """A Draft 2020-12 validator that also fills in each property's ``default``."""
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Return a validated copy of ``config`` with defaults filled in.

    Raises :class:`ModalMergeInputError` naming the offending key, e.g.
    ``config key 'train': unknown key 'lerning_rate' (did you mean 'learning_rate'?); allowed keys here: ...``.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    config = copy.deepcopy(config)
    errors = sorted(_validator_with_defaults(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.path) or "(top level)"
            message = err.message
            if err.validator == "additionalProperties":
                message = _unknown_keys_message(err.instance, err.schema)
            elif err.validator in ("oneOf", "anyOf") and "description" in err.schema:
                # "is not valid under any of the given schemas" says nothing: say what is wanted
                message += f"; expected: {' '.join(err.schema['description'].split())}"
            lines.append(f"config key '{key}': {message}")
        raise ModalMergeInputError("Invalid configuration:\n  " + "\n  ".join(lines) +
                                   f"\nSee modalmerge/{Path(schema_path).name} for every key, its type and its default.")
    _check_across_keys(config)
    return config


def merge_config(base: dict, overlay: dict) -> dict:
    """``overlay`` merged into a copy of ``base`` key by key, as Snakemake merges ``--configfile``s."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = merge_config(out.get(key) or {}, value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def _check_across_keys(config: dict) -> None:
    """Rules that tie two keys together (a schema states one key at a time)."""
    sample, model, train = config.get("sample", {}), config.get("model", {}), config.get("train", {})
    if "overlap" in sample and "clip_length" in model and sample["overlap"] >= model["clip_length"]:
        raise ModalMergeInputError(
            f"config key 'sample.overlap': {sample['overlap']} frames carried over leaves nothing new in a clip of "
            f"model.clip_length {model['clip_length']}; use 0..{model['clip_length'] - 1}.")
    if sample.get("variance") in ("large", "gaussian_posterior") and sample.get("eta", 1.0) != 1:
        raise ModalMergeInputError(
            f"config key 'sample.variance': {sample['variance']!r} is ancestral sampling (eta 1), but sample.eta is "
            f"{sample['eta']}; set sample.eta: 1.0 or sample.variance: small.")
    if sample.get("variance") == "gaussian_posterior" and sample.get("sampler", "ddim") != "ddim":
        raise ModalMergeInputError(
            "config key 'sample.variance': 'gaussian_posterior' is a DDIM option; set sample.sampler: ddim (with "
            "sample.steps: 1000 it follows DDPM's chain).")
    if sample.get("posterior_frames", "independent") != "independent" and sample.get("variance") != "gaussian_posterior":
        raise ModalMergeInputError(
            f"config key 'sample.posterior_frames': {sample['posterior_frames']!r} shapes the noise of variance "
            f"gaussian_posterior, but sample.variance is {sample.get('variance')!r}; set sample.variance: "
            "gaussian_posterior or sample.posterior_frames: independent.")
    if model.get("gaussian_baseline_temporal") and not model.get("gaussian_baseline", True):
        raise ModalMergeInputError(
            "config key 'model.gaussian_baseline_temporal': true gives the Gaussian baseline temporal correlations, but "
            "model.gaussian_baseline is false; set model.gaussian_baseline: true or model.gaussian_baseline_temporal: false.")
    if model.get("gaussian_baseline_shrinkage", "ledoit_wolf") != "ledoit_wolf" and not model.get("gaussian_baseline", True):
        raise ModalMergeInputError(
            f"config key 'model.gaussian_baseline_shrinkage': {model['gaussian_baseline_shrinkage']!r} shrinks the Gaussian "
            "baseline's covariance, but model.gaussian_baseline is false; set model.gaussian_baseline: true or "
            "model.gaussian_baseline_shrinkage: ledoit_wolf.")
    decode = config.get("decode", {})
    if decode.get("diffusion_prune_after") is not None and decode["diffusion_prune_after"] >= decode.get("diffusion_pairs", 8):
        raise ModalMergeInputError(
            f"config key 'decode.diffusion_prune_after': pruning after {decode['diffusion_prune_after']} pairs leaves none of "
            f"decode.diffusion_pairs ({decode.get('diffusion_pairs', 8)}) for the kept categories; use 1.."
            f"{decode.get('diffusion_pairs', 8) - 1}, or null for no pruning.")
    low, high = decode.get("diffusion_t_range", (100, 600))
    n_steps = config.get("diffusion", {}).get("n_train_steps", 1000)
    if not low < high <= n_steps:
        raise ModalMergeInputError(
            f"config key 'decode.diffusion_t_range': [{low}, {high}] is not a range of timesteps of the model's "
            f"diffusion.n_train_steps ({n_steps}); use [low, high] with 0 <= low < high <= {n_steps}.")
    test_runs = set(config.get("prep", {}).get("split", {}).get("test_runs") or [])
    if test_runs & set(train.get("validation_runs") or []):
        raise ModalMergeInputError(
            f"config key 'train.validation_runs': runs {sorted(test_runs & set(train['validation_runs']))} are test runs "
            "(prep.split.test_runs); the validation split must come from the training runs.")


def _unknown_keys_message(instance: dict, schema: dict) -> str:
    """'unknown key(s) ...; did you mean ...? allowed: ...' instead of jsonschema's dump of the schema."""
    allowed = sorted(schema.get("properties", {}))
    parts = []
    for unknown in sorted(set(instance) - set(allowed)):
        close = difflib.get_close_matches(str(unknown), allowed, n=1)
        parts.append(f"unknown key {unknown!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return "; ".join(parts) + f"; allowed keys here: {', '.join(allowed)}"


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ModalMergeInputError(f"{path} is not valid YAML: {err}") from err
    return validate_config(raw)
