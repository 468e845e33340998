# Decoding: which of 8 categories was seen, classical baselines beside diffusion-based decoders.


rule decode_classical:
    """The classical decoders and the learning curve: they need only the prepared data, so they run
    beside the training; decode adds the diffusion-based decoders and writes decoding.json."""
    input:
        volumes=rules.mask_and_normalize.output.volumes,
    output:
        json="results/decode/{subject}/classical_decoders.json",
    params:
        decode=config["decode"],
    threads: CLASSICAL_THREADS
    conda:
        "../environment.yml"
    log:
        "results/logs/decode_classical/{subject}.log",
    benchmark:
        "results/benchmarks/decode_classical/{subject}.tsv"
    script:
        "../workflow_scripts/decode_classical.py"


rule decode:
    """Held-out-run decoding (and leave-one-run-out) with permutation tests."""
    input:
        volumes=rules.mask_and_normalize.output.volumes,
        classical=rules.decode_classical.output.json,
        model=rules.train_diffusion.output.model,
        synthetic=rules.sample.output.npz,
    output:
        json="results/decode/{subject}/decoding.json",
        confusion="results/decode/{subject}/confusion_matrices.npz",
        table="results/decode/{subject}/decoding.tsv",
        evidence="results/decode/{subject}/classifier_evidence.json",
        evidence_maps="results/decode/{subject}/classifier_evidence.npz",
        figure=report(
            "results/decode/{subject}/decoding_accuracy.png",
            caption="../report/decoding_accuracy.rst",
            category="Decoding",
            labels={"subject": "{subject}", "figure": "accuracy"},
        ),
        figure_confusion=report(
            "results/decode/{subject}/confusion_matrices.png",
            caption="../report/confusion_matrices.rst",
            category="Decoding",
            labels={"subject": "{subject}", "figure": "confusion matrices"},
        ),
    params:
        decode=config["decode"],
        device=config["train"]["device"],
        precision=config["train"]["inference_precision"],
    threads: DECODE_THREADS
    priority: CRITICAL_PATH_PRIORITY["decode"]
    conda:
        "../environment.yml"
    log:
        "results/logs/decode/{subject}.log",
    benchmark:
        "results/benchmarks/decode/{subject}.tsv"
    script:
        "../workflow_scripts/decode.py"
