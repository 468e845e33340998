# Model: train the conditional spatiotemporal diffusion model, then sample synthetic fMRI.


rule train_diffusion:
    """Train on clips of the training runs only; resumes from the rolling checkpoint."""
    input:
        volumes=rules.mask_and_normalize.output.volumes,
        split=rules.mask_and_normalize.output.split,
    output:
        model="results/model/{subject}/model.pt",
        log_tsv="results/model/{subject}/training_log.tsv",
        summary="results/model/{subject}/training_summary.json",
    params:
        model=config["model"],
        diffusion=config["diffusion"],
        train=config["train"],
        checkpoint="results/model/{subject}/checkpoints/last.pt",
    threads: 4
    priority: CRITICAL_PATH_PRIORITY["train_diffusion"]
    resources:
        gpu=1,
    conda:
        "../environment.yml"
    log:
        "results/logs/train_diffusion/{subject}.log",
    benchmark:
        "results/benchmarks/train_diffusion/{subject}.tsv"
    script:
        "../workflow_scripts/train_diffusion.py"


rule sample:
    """Synthetic runs following the held-out design, per-category clips, snapshots, attention."""
    input:
        model=rules.train_diffusion.output.model,
        volumes=rules.mask_and_normalize.output.volumes,
    output:
        nifti="results/samples/{subject}/{subject}_desc-synthetic_bold.nii.gz",
        npz="results/samples/{subject}/synthetic.npz",
        snapshots="results/samples/{subject}/diffusion_snapshots.npz",
        attention_nifti="results/samples/{subject}/{subject}_desc-attention_map.nii.gz",
        attention_temporal="results/samples/{subject}/attention_temporal.npz",
        summary="results/samples/{subject}/sampling_summary.json",
        interpretability="results/samples/{subject}/interpretability.json",
    params:
        sample=config["sample"],
        device=config["train"]["device"],
        precision=config["train"]["inference_precision"],
    threads: 4
    priority: CRITICAL_PATH_PRIORITY["sample"]
    resources:
        gpu=1,
    conda:
        "../environment.yml"
    log:
        "results/logs/sample/{subject}.log",
    benchmark:
        "results/benchmarks/sample/{subject}.tsv"
    script:
        "../workflow_scripts/sample.py"
