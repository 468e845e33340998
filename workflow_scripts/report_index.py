"""report_index: results/report/index.html and summary.json across subjects."""

from modalmerge.stages.report import build_index
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
build_index(list(snakemake.input.reports), list(snakemake.input.summaries),  # noqa: F821
            snakemake.output.html, snakemake.output.summary)  # noqa: F821
log.info("open %s", snakemake.output.html)  # noqa: F821
