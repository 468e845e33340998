"""Training and sampling on the real embedded data with a tiny configuration."""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from modalmerge.config import validate_config
from modalmerge.errors import ModalMergeInputError
from modalmerge.data.clips import covering_clips, make_clips
from modalmerge.data.dataset import PreparedData, RunSplit
from modalmerge.diffusion.checkpoints import load_checkpoint, load_diffusion
from modalmerge.stages.sample import sample_subject
from modalmerge.stages.train import train_subject


def tiny_config(steps: int = 6) -> dict:
    config = validate_config({
        "model": {"clip_length": 4, "channels": [8, 16, 16], "attention_levels": [2], "temporal_heads": 2,
                  "temporal_head_dim": 8, "norm_groups": 4},
        "train": {"steps": steps, "batch_size": 2, "log_every": 2, "eval_every": 4, "checkpoint_every": 3,
                  "checkpoint_min_interval_s": 0,
                  "warmup_steps": 2, "device": "cpu"},
        "sample": {"steps": 4, "clips_per_category": 1, "snapshot_every": 2, "batch_size": 16},
    })
    return config


def outputs(folder) -> dict:
    return {"model": str(folder / "model.pt"), "log": str(folder / "training_log.tsv"),
            "summary": str(folder / "summary.json"), "checkpoint": str(folder / "ckpt" / "last.pt")}


def test_clips_stay_inside_one_run_and_never_touch_held_out_runs(prepared_slice):
    data = PreparedData.load(prepared_slice["volumes"])
    split = RunSplit.read(prepared_slice["split"])
    clips, labels, clip_runs, starts = make_clips(data.X, data.label_ids, data.runs, split.train_runs, 8)
    assert set(clip_runs) == set(split.train_runs)
    assert len(clips) == 9 * (121 - 8 + 1)
    for start, run in zip(starts[::50], clip_runs[::50]):
        assert set(data.runs[start:start + 8]) == {run}
        assert not data.is_test[start:start + 8].any()


def test_training_writes_a_weights_only_checkpoint_with_everything_to_sample(tmp_path, prepared_slice):
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], tiny_config(), outputs(tmp_path),
                            threads=2, progress=False)
    assert summary["steps"] == 6 and summary["trivial_baseline_loss"] == 1.0
    assert summary["train_runs"] == list(range(1, 10)) and summary["test_runs"] == [10, 11, 12]
    state = load_checkpoint(tmp_path / "model.pt")  # weights_only=True
    meta = state["metadata"]
    assert meta["seed"] == 0 and meta["grid_shape"] == [37, 19, 1] and len(meta["class_names"]) == 9
    assert np.allclose(meta["source_affine"], nib.load(prepared_slice["bold"]).affine)
    log = pd.read_csv(tmp_path / "training_log.tsv", sep="\t")
    assert log["step"].tolist() == [2, 4, 6]
    assert list(log.columns) == ["step", "loss", "heldout_loss", "learning_rate", "wall_time_s", "validation_loss"]
    assert np.isfinite(log["heldout_loss"].iloc[-1])
    assert summary["validation_runs"] == [] and summary["chosen_step"] == 6  # no validation: the last step


def test_a_validation_run_is_left_out_of_training_and_chooses_the_checkpoint(tmp_path, prepared_slice, monkeypatch):
    """With train.validation_runs [9]: the model trains on runs 1-8; the EMA weights of the step with the lowest
    validation error (never a test-run error) become the model, and the log carries the curve."""
    import modalmerge.stages.train as train_stage
    seen_runs = []
    real_make_clips = train_stage.make_clips

    def spy(X, labels, runs, keep_runs, *args, **kwargs):
        seen_runs.append(sorted(int(r) for r in keep_runs))
        return real_make_clips(X, labels, runs, keep_runs, *args, **kwargs)

    monkeypatch.setattr(train_stage, "make_clips", spy)
    config = tiny_config(steps=8)
    config["train"]["validation_runs"] = [9]
    config["train"]["eval_every"] = 2
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], config, outputs(tmp_path),
                            threads=2, progress=False)
    assert seen_runs[0] == list(range(1, 9)) and seen_runs[1] == [9] and seen_runs[2] == [10, 11, 12]
    assert summary["train_runs"] == list(range(1, 9)) and summary["validation_runs"] == [9]
    log = pd.read_csv(tmp_path / "training_log.tsv", sep="\t")
    assert log["validation_loss"].notna().all() and len(log) == 4
    best = log.loc[log["validation_loss"].idxmin()]
    assert summary["chosen_step"] == int(best["step"])
    assert summary["validation_denoising_error"] == pytest.approx(best["validation_loss"], abs=1e-6)
    final, rolling = load_checkpoint(tmp_path / "model.pt"), load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert rolling["best"]["step"] == summary["chosen_step"]
    for key, value in final["ema"].items():
        assert torch.equal(value, rolling["best"]["ema"][key])
    if summary["chosen_step"] != 8:  # the chosen weights are not the last ones
        assert any(not torch.equal(final["ema"][k], rolling["ema"][k]) for k in final["ema"])


def test_the_checkpoint_is_the_best_validation_step_not_the_last(tmp_path, prepared_slice, monkeypatch):
    """Validation errors scripted to be lowest at step 4 of 8: the model's weights are step 4's EMA."""
    import modalmerge.training.trainer as trainer_module
    real = trainer_module.heldout_denoising_error
    scripted = iter([0.9, 0.5, 0.7, 0.8])  # validation evaluations at steps 2, 4, 6, 8
    snapshots = {}

    def validation_or_real(diffusion, clips, labels, n_bins=10, per_bin=8, **kwargs):
        if n_bins != 10:  # the test-run error (logged only) keeps the real measure
            return real(diffusion, clips, labels, n_bins, per_bin, **kwargs)
        snapshots[len(snapshots)] = {k: v.clone() for k, v in diffusion.network.state_dict().items()}
        return [0], [next(scripted)]

    monkeypatch.setattr(trainer_module, "heldout_denoising_error", validation_or_real)
    config = tiny_config(steps=8)
    config["train"].update(validation_runs=[9], eval_every=2)
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], config, outputs(tmp_path),
                            threads=2, progress=False)
    assert summary["chosen_step"] == 4 and summary["validation_denoising_error"] == 0.5
    final = load_checkpoint(tmp_path / "model.pt")["ema"]
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert any(not torch.equal(final[k], snapshots[3][k]) for k in final)


@pytest.mark.parametrize("runs, message", [([10], "are test runs"), ([13], "not training runs"),
                                           (list(range(1, 10)), "leaves no run to train on")])
def test_a_validation_run_outside_the_training_runs_is_refused(tmp_path, prepared_slice, runs, message):
    config = tiny_config()
    with pytest.raises(ModalMergeInputError, match=message):
        config["train"]["validation_runs"] = runs
        validate_config(config)
        train_subject(prepared_slice["volumes"], prepared_slice["split"], config, outputs(tmp_path), progress=False)
    assert not (tmp_path / "model.pt").exists()


class Killed(Exception):
    pass


def test_a_killed_run_resumes_from_its_checkpoint_exactly_like_an_uninterrupted_run(tmp_path, prepared_slice, monkeypatch):
    config = tiny_config(steps=6)  # rolling checkpoint every 3 steps
    straight = outputs(tmp_path / "straight")
    train_subject(prepared_slice["volumes"], prepared_slice["split"], config, straight, threads=2, progress=False)

    killed = outputs(tmp_path / "killed")
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def step_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # killed during step 5, after the checkpoint of step 3
            raise Killed()
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_die)
    with pytest.raises(Killed):
        train_subject(prepared_slice["volumes"], prepared_slice["split"], config, killed, threads=2, progress=False)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert torch.load(killed["checkpoint"], weights_only=True)["step"] == 3
    assert not (tmp_path / "killed" / "model.pt").exists()

    train_subject(prepared_slice["volumes"], prepared_slice["split"], config, killed, threads=2, progress=False)
    a = torch.load(straight["model"], weights_only=True)
    b = torch.load(killed["model"], weights_only=True)
    assert a["step"] == b["step"] == 6
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.allclose(value, b[part][key], atol=1e-6), (part, key)
    log = pd.read_csv(killed["log"], sep="\t")
    assert log["step"].tolist() == [2, 4, 6]  # rebuilt from the checkpoint: no gap, no duplicate


def test_a_checkpoint_from_another_configuration_is_not_resumed(tmp_path, prepared_slice, caplog):
    config = tiny_config(steps=3)
    out = outputs(tmp_path)
    train_subject(prepared_slice["volumes"], prepared_slice["split"], config, out, threads=2, progress=False)
    first = torch.load(out["model"], weights_only=True)["model"]
    other = copy.deepcopy(config)
    other["train"]["learning_rate"] = 1e-3
    caplog.set_level("INFO", logger="modalmerge")
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], other, out, threads=2, progress=False)
    assert summary["steps"] == 3
    assert "ignoring checkpoint" in caplog.text and "made with another configuration" in caplog.text
    assert "resumed from" not in caplog.text
    second = torch.load(out["model"], weights_only=True)
    assert second["metadata"]["config"]["train"]["learning_rate"] == 1e-3
    # a wrongly resumed run would stop at once with the first run's weights (its checkpoint is at step 3)
    assert any(not torch.equal(first[name], second["model"][name]) for name in first if first[name].is_floating_point())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, prepared_slice) -> str:
    folder = tmp_path_factory.mktemp("model")
    train_subject(prepared_slice["volumes"], prepared_slice["split"], tiny_config(steps=4), outputs(folder),
                  threads=2, progress=False)
    return str(folder / "model.pt")


def sample_outputs(folder) -> dict:
    names = {"nifti": "syn.nii.gz", "npz": "synthetic.npz", "snapshots": "snap.npz", "attention_nifti": "att.nii.gz",
             "attention_temporal": "att_t.npz", "summary": "summary.json"}
    return {k: str(folder / v) for k, v in names.items()}


def assert_runs_follow_the_held_out_design(npz_path, volumes_path) -> PreparedData:
    """One synthetic run per held-out run (121 volumes each) with its labels, finite, zero outside the mask."""
    data = PreparedData.load(volumes_path)
    with np.load(npz_path) as npz:
        assert npz["X"].shape == (3 * 121, 37, 19, 1)
        assert np.array_equal(npz["label_ids"], data.label_ids[data.is_test])
        assert np.array_equal(npz["design_run"], data.runs[data.is_test])
        assert np.all(np.isfinite(npz["X"])) and np.all(npz["X"][:, ~data.mask] == 0)
    return data


def test_sampling_follows_the_held_out_design_in_source_space(tmp_path, tiny_model, prepared_slice):
    config = tiny_config()["sample"]
    out = sample_outputs(tmp_path)
    summary = sample_subject(tiny_model, prepared_slice["volumes"], config, out, device="cpu", threads=2)
    data = assert_runs_follow_the_held_out_design(out["npz"], prepared_slice["volumes"])
    with np.load(out["npz"]) as npz:
        assert npz["category_clips"].shape == (8, 4, 37, 19, 1)
    img = nib.load(out["nifti"])
    assert img.shape == (40, 20, 1, 3 * 121)
    assert np.allclose(img.affine, data.source_affine)
    with np.load(out["snapshots"]) as snaps:
        assert snaps["x_t"].shape[1] == 8 and snaps["timesteps"][0] == 1000 and snaps["timesteps"][-1] == 0
    assert nib.load(out["attention_nifti"]).shape == (40, 20, 1, 8)
    with np.load(out["attention_temporal"]) as att:
        assert att["temporal"].shape == (8, 4, 4)
        assert np.allclose(att["temporal"].sum(-1), 1, atol=1e-4)  # rows of attention weights
    assert summary["steps"] == 4 and np.isfinite(summary["synthetic_std"])


def test_coherent_runs_follow_the_held_out_design_and_carry_the_overlap_over(tmp_path, tiny_model, prepared_slice):
    """sample.overlap 1: each held-out design becomes one run of 121 volumes made window by window (40 windows
    of 4 volumes moving by 3), with the design's labels and nothing outside the mask."""
    config = dict(tiny_config()["sample"], overlap=1, clips_per_category=0)
    out = sample_outputs(tmp_path)
    summary = sample_subject(tiny_model, prepared_slice["volumes"], config, out, device="cpu", threads=2)
    assert_runs_follow_the_held_out_design(out["npz"], prepared_slice["volumes"])
    assert summary["overlap"] == 1 and summary["n_clips"] == 3 * 40  # windows of 4 moving by 3 over 121


def test_the_gaussian_posterior_variance_takes_its_covariance_from_the_training_runs(tmp_path, tiny_model, prepared_slice):
    """sample.variance gaussian_posterior: the stage fits the within-category covariance on the model's
    training runs only, says so in the summary, and adds noise to what the default variance draws
    (whether that noise is right is tests/test_schedulers.py's known-answer test)."""
    config = dict(tiny_config()["sample"], clips_per_category=0)
    small = sample_subject(tiny_model, prepared_slice["volumes"], config, sample_outputs(tmp_path / "small"), device="cpu")
    summary = sample_subject(tiny_model, prepared_slice["volumes"], dict(config, variance="gaussian_posterior"),
                             sample_outputs(tmp_path / "posterior"), device="cpu")
    assert_runs_follow_the_held_out_design(sample_outputs(tmp_path / "posterior")["npz"], prepared_slice["volumes"])
    data = PreparedData.load(prepared_slice["volumes"])
    assert summary["gaussian_prior"]["runs"] == sorted(set(data.train_runs)) and not set(data.test_runs) & set(
        summary["gaussian_prior"]["runs"])
    assert summary["gaussian_prior"]["n_volumes"] == int(np.isin(data.runs, data.train_runs).sum())
    assert small["gaussian_prior"] is None and summary["synthetic_std"] != small["synthetic_std"]
    assert summary["gaussian_prior"]["frames"] == "independent"
    # posterior_frames correlated: the same training runs also give each component's temporal correlation
    correlated = sample_subject(tiny_model, prepared_slice["volumes"],
                                dict(config, variance="gaussian_posterior", posterior_frames="correlated"),
                                sample_outputs(tmp_path / "correlated"), device="cpu")
    assert correlated["gaussian_prior"]["runs"] == summary["gaussian_prior"]["runs"]
    assert 0.1 < correlated["gaussian_prior"]["lag1_correlation_variance_weighted"] < 0.9
    assert correlated["synthetic_std"] not in (summary["synthetic_std"], small["synthetic_std"])


def test_residual_dynamics_colour_the_sampled_runs_with_the_training_runs_lags(tmp_path, tiny_model, prepared_slice):
    """sample.residual_dynamics coloured: the same draws as without it, then each synthetic run coloured by
    the colouring fitted on the model's training runs only (lags up to clip_length - 1 = 3), inside the mask;
    the summary records the residual lag 1 before and after, and the npz the lags used."""
    from modalmerge.analysis.residual_dynamics import ResidualColouring
    config = dict(tiny_config()["sample"], clips_per_category=0)
    plain_out, coloured_out = sample_outputs(tmp_path / "plain"), sample_outputs(tmp_path / "coloured")
    plain = sample_subject(tiny_model, prepared_slice["volumes"], config, plain_out, device="cpu")
    summary = sample_subject(tiny_model, prepared_slice["volumes"], dict(config, residual_dynamics="coloured"),
                             coloured_out, device="cpu")
    data = assert_runs_follow_the_held_out_design(coloured_out["npz"], prepared_slice["volumes"])
    assert plain["residual_dynamics"] == {"method": "none"}
    lag1 = summary["residual_dynamics"]["residual_lag1_variance_weighted"]
    assert summary["residual_dynamics"]["max_lag"] == 3
    assert abs(lag1["coloured"] - lag1["training_runs"]) < abs(lag1["sampled"] - lag1["training_runs"])
    with np.load(plain_out["npz"]) as a, np.load(coloured_out["npz"]) as b:
        assert int(b["residual_max_lag"]) == 3 and str(b["residual_dynamics"]) == "coloured"
        train = np.isin(data.runs, data.train_runs)
        colouring = ResidualColouring(max_lag=3).fit(data.X[train][:, data.mask], data.label_ids[train], data.runs[train])
        runs = [a["X"][a["design_run"] == r][:, data.mask] for r in data.test_runs]
        labels = [a["label_ids"][a["design_run"] == r] for r in data.test_runs]
        expected = colouring.colour(runs, labels)
        assert np.allclose(b["X"][:, data.mask], np.concatenate(expected), atol=1e-5)
    # the other settings: the class's colour() with the stage's options on the same draws (matched: each
    # component's variance first set to the training runs'; whitened: made white in time before that;
    # matched_after: scaled after the colouring; run_matched: each run's residual around its own label means)
    for method, options in (("matched", {"variance": "matched"}), ("redistributed", {"variance": "redistributed"}),
                            ("whitened", {"variance": "matched", "whiten": True}),
                            ("matched_after", {"variance": "matched_after"}), ("run_matched", {"variance": "run_matched"})):
        method_out = sample_outputs(tmp_path / method)
        summary = sample_subject(tiny_model, prepared_slice["volumes"], dict(config, residual_dynamics=method),
                                 method_out, device="cpu")
        assert summary["residual_dynamics"]["method"] == method
        with np.load(method_out["npz"]) as m:
            expected = colouring.colour(runs, labels, **options)
            assert np.allclose(m["X"][:, data.mask], np.concatenate(expected), atol=1e-4), method
    # standardize_runs: the same runs, each then z-scored voxel by voxel as the real runs are
    standard_out = sample_outputs(tmp_path / "standardized")
    assert sample_subject(tiny_model, prepared_slice["volumes"], dict(config, residual_dynamics="matched", standardize_runs=True),
                          standard_out, device="cpu")["standardize_runs"] is True
    with np.load(standard_out["npz"]) as z, np.load(tmp_path / "matched" / "synthetic.npz") as m:
        for run in data.test_runs:
            inside = z["X"][z["design_run"] == run][:, data.mask]
            assert np.allclose(inside.mean(0), 0, atol=1e-5) and np.allclose(inside.std(0, ddof=1), 1, atol=1e-4)
            plain = m["X"][m["design_run"] == run][:, data.mask]
            assert np.allclose(inside, (plain - plain.mean(0)) / plain.std(0, ddof=1), atol=1e-4)

def test_the_gaussian_posterior_variance_is_refused_where_it_does_not_apply():
    from modalmerge.config import validate_config
    from modalmerge.errors import ModalMergeInputError
    with pytest.raises(ModalMergeInputError, match="sample.sampler: ddim"):
        validate_config({"sample": {"variance": "gaussian_posterior", "sampler": "ddpm"}})
    with pytest.raises(ModalMergeInputError, match="sample.eta: 1.0"):
        validate_config({"sample": {"variance": "gaussian_posterior", "eta": 0.0}})


def test_same_seed_gives_identical_samples(tmp_path, tiny_model, prepared_slice):
    config = dict(tiny_config()["sample"], runs_per_heldout_design=0, clips_per_category=1)
    first, second = sample_outputs(tmp_path / "a"), sample_outputs(tmp_path / "b")
    sample_subject(tiny_model, prepared_slice["volumes"], config, first, device="cpu")
    sample_subject(tiny_model, prepared_slice["volumes"], config, second, device="cpu")
    with np.load(first["npz"]) as a, np.load(second["npz"]) as b:
        assert np.array_equal(a["category_clips"], b["category_clips"])
    other = sample_outputs(tmp_path / "c")
    sample_subject(tiny_model, prepared_slice["volumes"], dict(config, seed=1), other, device="cpu")
    with np.load(first["npz"]) as a, np.load(other["npz"]) as c:
        assert not np.array_equal(a["category_clips"], c["category_clips"])


def test_bfloat16_sampling_runs_in_bf16_and_stays_close_to_float32(tmp_path, tiny_model, prepared_slice):
    """The sampler under bf16 autocast: recorded, really in bf16 (samples differ from float32's with
    the same seed), and close to them (same noise, a few DDIM steps)."""
    config = dict(tiny_config()["sample"], runs_per_heldout_design=0, clips_per_category=1)
    single, half = sample_outputs(tmp_path / "fp32"), sample_outputs(tmp_path / "bf16")
    sample_subject(tiny_model, prepared_slice["volumes"], config, single, device="cpu")
    summary = sample_subject(tiny_model, prepared_slice["volumes"], config, half, device="cpu", precision="bfloat16")
    assert summary["inference_precision"] == "bfloat16"
    with np.load(single["npz"]) as a, np.load(half["npz"]) as b:
        x, y = a["category_clips"], b["category_clips"]
        assert y.dtype == np.float32 and np.isfinite(y).all() and not np.array_equal(x, y)
        assert np.abs(x - y).mean() < 0.05 * np.abs(x).mean()


def test_inference_precision_auto_follows_the_hardware(monkeypatch):
    from modalmerge import runtime
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "native_bfloat16", lambda device: True)
    assert runtime.inference_precision(cpu, "auto") == "bfloat16"
    monkeypatch.setattr(runtime, "native_bfloat16", lambda device: False)
    assert runtime.inference_precision(cpu, "auto") == "float32"
    assert runtime.inference_precision(cpu, "bfloat16") == "bfloat16"
    with pytest.raises(ModalMergeInputError, match="inference_precision"):
        runtime.inference_precision(cpu, "fp16")
    conv = torch.nn.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 5, 5)
    with runtime.model_autocast(cpu, "bfloat16"):
        assert conv(x).dtype == torch.bfloat16
    with runtime.model_autocast(cpu, "float32"):
        assert conv(x).dtype == torch.float32


def test_covering_clips_rebuild_a_run_without_overlap():
    labels = np.arange(121)
    clips, keep = covering_clips(labels, 8)
    rebuilt = np.concatenate([clip[k] for clip, k in zip(clips, keep)])
    assert np.array_equal(rebuilt, labels)


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(ModalMergeInputError, match="run the train_diffusion stage first"):
        load_diffusion(tmp_path / "none.pt")


def test_the_report_states_the_validation_choice_and_draws_its_curve(tmp_path):
    from modalmerge.stages.report import training_section
    log = tmp_path / "training_log.tsv"
    log.write_text("step\tloss\theldout_loss\tlearning_rate\twall_time_s\tvalidation_loss\n"
                   "2\t0.9\tnan\t1e-3\t1.0\t0.80\n4\t0.7\t0.5\t1e-3\t2.0\t0.60\n6\t0.6\tnan\t1e-3\t3.0\t0.65\n")
    summary = {"parameters": 10, "steps": 6, "train_time_s": 3.0, "device": "cpu", "final_loss": 0.6,
               "heldout_denoising_error_ema": 0.5, "heldout_denoising_error_raw": 0.5, "validation_runs": [9],
               "chosen_step": 4, "validation_denoising_error": 0.6}
    html = "\n".join(training_section(summary, log))
    assert "validation run(s) [9]" in html and "step 4 of 6" in html and "0.6000" in html
    assert "data:image/png;base64," in html
    summary.update(validation_runs=[], chosen_step=6, validation_denoising_error=None)
    assert "validation run(s)" not in "\n".join(training_section(summary, log))


@pytest.mark.parametrize("native", [True, False])
def test_cpu_training_runs_under_bf16_only_when_asked_and_native(tmp_path, prepared_slice, monkeypatch, native):
    """train.cpu_mixed_precision (default true): bf16 autocast in a CPU training where the CPU computes
    bf16 natively (the forward passes really run in bf16), float32 otherwise or when switched off; the
    summary says which."""
    from modalmerge.training import trainer as trainer_module
    monkeypatch.setattr(trainer_module, "native_bfloat16", lambda device: native)
    seen = []
    original = torch.nn.functional.conv2d

    def spy(x, *args, **kwargs):
        out = original(x, *args, **kwargs)
        seen.append(out.dtype)
        return out
    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    config = tiny_config(steps=2)  # the default: train.cpu_mixed_precision true
    assert config["train"]["cpu_mixed_precision"] is True
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], config, outputs(tmp_path),
                            threads=2, progress=False)
    assert summary["training_precision"] == ("bfloat16" if native else "float32")
    assert (torch.bfloat16 in seen) == native
    off = tiny_config(steps=2)
    off["train"]["cpu_mixed_precision"] = False  # switched off: float32 whatever the CPU
    assert train_subject(prepared_slice["volumes"], prepared_slice["split"], off, outputs(tmp_path / "off"),
                         threads=2, progress=False)["training_precision"] == "float32"


@pytest.mark.parametrize("interval, expected", [(0, [1, 2, 3, 4]), (1e6, [4])])
def test_rolling_checkpoints_are_spaced_by_steps_and_by_seconds(tmp_path, prepared_slice, monkeypatch, interval, expected):
    """checkpoint_every steps, but not more often than checkpoint_min_interval_s (a GPU does 100 steps
    in about a second); the last step's checkpoint is always written."""
    from modalmerge.training import trainer as trainer_module
    config = tiny_config(steps=4)
    config["train"].update(checkpoint_every=1, checkpoint_min_interval_s=interval)
    saved = []
    real_save = trainer_module.save_checkpoint_atomic
    monkeypatch.setattr(trainer_module, "save_checkpoint_atomic", lambda state, path: (saved.append(state["step"]),
                                                                                       real_save(state, path)))
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], config, outputs(tmp_path), threads=2,
                            progress=False)
    assert saved == expected
    assert summary["cuda_graph"] is False  # a CPU steps eagerly


def test_cuda_graph_on_without_a_gpu_is_refused_before_any_output(tmp_path, prepared_slice):
    config = tiny_config(steps=2)
    config["train"]["cuda_graph"] = "on"
    out = outputs(tmp_path / "out")
    with pytest.raises(ModalMergeInputError, match="'train.cuda_graph' is 'on' but the device is not a CUDA GPU"):
        train_subject(prepared_slice["volumes"], prepared_slice["split"], config, out, threads=2, progress=False)
    assert not any(Path(path).exists() for path in out.values())


def test_a_gaussian_baseline_is_fitted_on_the_model_runs_only_and_saved(tmp_path, prepared_slice):
    """model.gaussian_baseline: the Gaussian comes from the model's own runs (a validation run and the test runs
    are left out), travels in the checkpoint, and the model starts from it: its held-out loss at the first logged
    step is below the trivial 1 that the plain network starts from."""
    config = tiny_config(steps=2)
    config["model"]["gaussian_baseline"] = True
    config["train"]["validation_runs"] = [9]
    train_subject(prepared_slice["volumes"], prepared_slice["split"], config, outputs(tmp_path), threads=2, progress=False)
    diffusion, _ = load_diffusion(tmp_path / "model.pt")
    data = PreparedData.load(prepared_slice["volumes"])
    own = np.isin(data.runs, range(1, 9))
    inside = data.mask.astype(bool)
    for label in (0, data.label_ids[own][0]):
        expected = data.X[own & (data.label_ids == label)][:, inside].mean(0)
        assert np.allclose(diffusion.network.means[label].numpy(), expected, atol=1e-5)
    with_validation = np.isin(data.runs, range(1, 10))
    assert not np.allclose(diffusion.network.means[0].numpy(), data.X[with_validation & (data.label_ids == 0)][:, inside].mean(0), atol=1e-5)
    log = pd.read_csv(tmp_path / "training_log.tsv", sep="\t")
    assert log["heldout_loss"].iloc[0] < 0.9
