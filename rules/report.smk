# Report: one self-contained HTML page with every number and figure, and summary.json.


rule report:
    """The experiment in one page: data, training, diffusion, fidelity, decoding, anomalies, provenance."""
    input:
        unpack(report_inputs),
    output:
        html=report(
            "results/report/{subject}/index.html",
            caption="../report/index.rst",
            category="Report",
            labels={"subject": "{subject}", "figure": "full HTML report"},
        ),
        summary="results/report/{subject}/summary.json",
    params:
        benchmarks=benchmark_files,
        config=config,
    conda:
        "../environment.yml"
    log:
        "results/logs/report/{subject}.log",
    benchmark:
        "results/benchmarks/report/{subject}.tsv"
    script:
        "../workflow_scripts/report.py"


rule report_index:
    """results/report/index.html: the report of the first subject (links to the others)."""
    input:
        reports=expand(rules.report.output.html, subject=SUBJECTS),
        summaries=expand(rules.report.output.summary, subject=SUBJECTS),
    output:
        html="results/report/index.html",
        summary="results/report/summary.json",
    conda:
        "../environment.yml"
    log:
        "results/logs/report_index.log",
    benchmark:
        "results/benchmarks/report_index.tsv"
    script:
        "../workflow_scripts/report_index.py"
