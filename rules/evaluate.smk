# Evaluation: how close synthetic fMRI comes to held-out real fMRI, beside ceilings and baselines.


rule evaluate_ssim:
    """SSIM (z-scored and raw), map correlation, RSA, MMD, C2ST, TSTR, memorisation."""
    input:
        volumes=rules.mask_and_normalize.output.volumes,
        synthetic=rules.sample.output.npz,
    output:
        json="results/eval/{subject}/fidelity.json",
        tsv="results/eval/{subject}/fidelity_per_category.tsv",
        figure_slices=report(
            "results/eval/{subject}/real_vs_synthetic.png",
            caption="../report/real_vs_synthetic.rst",
            category="Fidelity",
            labels={"subject": "{subject}", "figure": "real vs synthetic"},
        ),
        figure_ssim=report(
            "results/eval/{subject}/ssim_distributions.png",
            caption="../report/ssim_distributions.rst",
            category="Fidelity",
            labels={"subject": "{subject}", "figure": "SSIM with ceiling and baselines"},
        ),
    params:
        evaluate=config["evaluate"],
        prep={key: config["prep"][key] for key in ("detrend", "standardize")},
    threads: LIGHT_THREADS
    conda:
        "../environment.yml"
    log:
        "results/logs/evaluate_ssim/{subject}.log",
    benchmark:
        "results/benchmarks/evaluate_ssim/{subject}.tsv"
    script:
        "../workflow_scripts/evaluate_ssim.py"
