"""score_auc: every anomaly detector of one subject."""

from modalmerge.stages.anomalies import score_subject
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
summary = score_subject(snakemake.input.injected, snakemake.input.volumes, snakemake.input.model,  # noqa: F821
                        snakemake.params.anomalies, dict(snakemake.output.items()),  # noqa: F821
                        device=snakemake.params.device, precision=snakemake.params.precision, threads=snakemake.threads)  # noqa: F821
log.info("AUROC: %s", summary)
