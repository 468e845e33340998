# Configuration validation and helpers shared by every rule file.
import os
import sys
import time
from pathlib import Path

from snakemake.utils import min_version

from modalmerge.config import validate_config

min_version("8.0")


# modalmerge/config.schema.yaml states every key, its type and its default (filled in here)
config.update(validate_config(config))

SUBJECTS = config["subjects"]


def requested_cores():
    """--cores as given, or None (a dry run, --unlock or --report need none; reading it then raises)."""
    try:
        return workflow.cores
    except Exception:
        return None


if workflow.local_exec and (requested_cores() or 0) > (os.cpu_count() or 1):
    print(f"Warning: --cores {requested_cores()} on a machine with {os.cpu_count()} cores: jobs will share cores "
          f"and each runs slower; use --cores {os.cpu_count()} (make run does).", file=sys.stderr)
WORKFLOW_STARTED = time.time()


def machine_cores() -> int:
    """--cores, capped at this machine's cores (1 for a dry run)."""
    return max(1, min(requested_cores() or 1, os.cpu_count() or 1))


# Threads of the evaluation stages, from --cores (not a fixed number): evaluate_ssim and score_auc
# take a quarter (at least 2) so that they run beside decode, which takes the rest (at least 2).
# On 2 cores every stage gets 2 and they run one after the other; on 16, decode 12 and the others 4.
LIGHT_THREADS = min(machine_cores(), max(2, machine_cores() // 4))
DECODE_THREADS = min(machine_cores(), max(2, machine_cores() - LIGHT_THREADS))
# decode_classical runs beside train_diffusion (4) and inject_synthetic_anomalies (a quarter), so all
# three start together on 16 cores (8 + 4 + 4); on 2 cores it gets 2 and they run one after the other.
CLASSICAL_THREADS = min(machine_cores(), max(2, DECODE_THREADS - LIGHT_THREADS))
# Where jobs compete for cores, the chain that ends the run goes first: training, sampling, then
# decode (Snakemake runs ready jobs of higher priority first).
CRITICAL_PATH_PRIORITY = {"train_diffusion": 10, "sample": 10, "decode": 5}


def workflow_built_the_report() -> bool:
    page = Path(rules.report_index.output.html)
    return page.exists() and page.stat().st_mtime >= WORKFLOW_STARTED


wildcard_constraints:
    subject="|".join(SUBJECTS),


# Input functions of the report rule (evaluated when the DAG is built, after every rule exists).
def report_inputs(wildcards):
    """Outputs of the stages switched on in config (the report marks the others as not run)."""
    subject = wildcards.subject
    prep = rules.mask_and_normalize.output
    inputs = {
        "mean": prep.mean.format(subject=subject),
        "mask": prep.mask.format(subject=subject),
        "table": prep.table.format(subject=subject),
        "volumes": prep.volumes.format(subject=subject),
        "split": prep.split.format(subject=subject),
        "training_summary": rules.train_diffusion.output.summary.format(subject=subject),
        "training_log": rules.train_diffusion.output.log_tsv.format(subject=subject),
        "sampling_summary": rules.sample.output.summary.format(subject=subject),
        "snapshots": rules.sample.output.snapshots.format(subject=subject),
        "attention_nifti": rules.sample.output.attention_nifti.format(subject=subject),
        "attention_temporal": rules.sample.output.attention_temporal.format(subject=subject),
        "interpretability": rules.sample.output.interpretability.format(subject=subject),
    }
    if config["stages"]["evaluate_ssim"]:
        inputs["fidelity"] = rules.evaluate_ssim.output.json.format(subject=subject)
        inputs["figure_slices"] = rules.evaluate_ssim.output.figure_slices.format(subject=subject)
        inputs["figure_ssim"] = rules.evaluate_ssim.output.figure_ssim.format(subject=subject)
    if config["stages"]["decode"]:
        inputs["decoding"] = rules.decode.output.json.format(subject=subject)
        inputs["figure_decoding"] = rules.decode.output.figure.format(subject=subject)
        inputs["figure_confusion"] = rules.decode.output.figure_confusion.format(subject=subject)
        inputs["evidence"] = rules.decode.output.evidence.format(subject=subject)
        inputs["evidence_maps"] = rules.decode.output.evidence_maps.format(subject=subject)
    if config["stages"]["anomalies"]:
        inputs["auc"] = rules.score_auc.output.json.format(subject=subject)
        inputs["figure_roc"] = rules.score_auc.output.figure_roc.format(subject=subject)
        inputs["figure_strength"] = rules.score_auc.output.figure_strength.format(subject=subject)
        inputs["figure_examples"] = rules.score_auc.output.figure_examples.format(subject=subject)
    return inputs


def benchmark_files(wildcards):
    stages = ["fetch_haxby", "mask_and_normalize", "train_diffusion", "sample", "evaluate_ssim", "decode_classical",
              "decode", "inject_synthetic_anomalies", "score_auc"]
    return [f"results/benchmarks/{stage}/{wildcards.subject}.tsv" for stage in stages]
