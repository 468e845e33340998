# Anomalies: inject documented anomalies into held-out clips, then score every detector.


rule inject_synthetic_anomalies:
    """Blob, dropout, spike, motion and noise-burst anomalies with voxel-level ground truth."""
    input:
        volumes=rules.mask_and_normalize.output.volumes,
    output:
        npz="results/anomalies/{subject}/injected.npz",
        examples="results/anomalies/{subject}/{subject}_desc-anomalyexamples_bold.nii.gz",
        examples_mask="results/anomalies/{subject}/{subject}_desc-anomalyexamples_mask.nii.gz",
    params:
        anomalies=config["anomalies"],
        clip_length=config["model"]["clip_length"],
    conda:
        "../environment.yml"
    log:
        "results/logs/inject_synthetic_anomalies/{subject}.log",
    benchmark:
        "results/benchmarks/inject_synthetic_anomalies/{subject}.tsv"
    script:
        "../workflow_scripts/inject_synthetic_anomalies.py"


rule score_auc:
    """Clip- and voxel-level AUROC/AUPRC/Dice of the diffusion detector and classical baselines."""
    input:
        injected=rules.inject_synthetic_anomalies.output.npz,
        volumes=rules.mask_and_normalize.output.volumes,
        model=rules.train_diffusion.output.model,
    output:
        json="results/anomalies/{subject}/auc.json",
        table="results/anomalies/{subject}/auroc_by_strength.tsv",
        roc="results/anomalies/{subject}/roc_curves.npz",
        figure_roc=report(
            "results/anomalies/{subject}/roc_curves.png",
            caption="../report/roc_curves.rst",
            category="Anomalies",
            labels={"subject": "{subject}", "figure": "ROC"},
        ),
        figure_strength=report(
            "results/anomalies/{subject}/auroc_vs_strength.png",
            caption="../report/auroc_vs_strength.rst",
            category="Anomalies",
            labels={"subject": "{subject}", "figure": "AUROC vs strength"},
        ),
        figure_examples=report(
            "results/anomalies/{subject}/anomaly_examples.png",
            caption="../report/anomaly_examples.rst",
            category="Anomalies",
            labels={"subject": "{subject}", "figure": "examples"},
        ),
    params:
        anomalies=config["anomalies"],
        device=config["train"]["device"],
        precision=config["train"]["inference_precision"],
    threads: LIGHT_THREADS
    conda:
        "../environment.yml"
    log:
        "results/logs/score_auc/{subject}.log",
    benchmark:
        "results/benchmarks/score_auc/{subject}.tsv"
    script:
        "../workflow_scripts/score_auc.py"
