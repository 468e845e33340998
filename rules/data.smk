# Data: fetch Haxby 2001 (or your own study) and prepare masked, normalised volumes.


rule fetch_haxby:
    """Bring the data into one normalised layout (BOLD + events per run, masks)."""
    output:
        dataset=directory("results/data/{subject}"),
    params:
        data=config["data"],
    conda:
        "../environment.yml"
    log:
        "results/logs/fetch_haxby/{subject}.log",
    benchmark:
        "results/benchmarks/fetch_haxby/{subject}.tsv"
    script:
        "../workflow_scripts/fetch_haxby.py"


rule mask_and_normalize:
    """Mask, detrend and z-score each run; label volumes; decide the run split once."""
    input:
        dataset=rules.fetch_haxby.output.dataset,
    output:
        bold="results/prep/{subject}/{subject}_desc-normalized_bold.nii.gz",
        mask="results/prep/{subject}/{subject}_desc-brain_mask.nii.gz",
        mean="results/prep/{subject}/{subject}_desc-mean_bold.nii.gz",
        volumes="results/prep/{subject}/volumes.npz",
        table="results/prep/{subject}/volumes.tsv",
        split="results/prep/{subject}/split.json",
    params:
        prep=config["prep"],
    conda:
        "../environment.yml"
    log:
        "results/logs/mask_and_normalize/{subject}.log",
    benchmark:
        "results/benchmarks/mask_and_normalize/{subject}.tsv"
    script:
        "../workflow_scripts/mask_and_normalize.py"
