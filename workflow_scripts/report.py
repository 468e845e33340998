"""report: the self-contained HTML report of one subject."""

from modalmerge.stages.report import build_report
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
inputs = dict(snakemake.input.items())  # noqa: F821
inputs["subject"] = snakemake.wildcards.subject  # noqa: F821
inputs["benchmarks"] = snakemake.params.benchmarks  # noqa: F821
build_report(inputs, snakemake.params.config, snakemake.output.html, snakemake.output.summary)  # noqa: F821
log.info("report written to %s", snakemake.output.html)  # noqa: F821
