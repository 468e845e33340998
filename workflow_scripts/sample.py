"""sample: synthetic fMRI, diffusion snapshots and attention maps of one subject."""

from modalmerge.stages.sample import sample_subject
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
summary = sample_subject(
    snakemake.input.model,  # noqa: F821
    snakemake.input.volumes,  # noqa: F821
    snakemake.params.sample,  # noqa: F821
    dict(snakemake.output.items()),  # noqa: F821
    device=snakemake.params.device, precision=snakemake.params.precision,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
log.info("sampled: %s", summary)
