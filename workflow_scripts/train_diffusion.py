"""train_diffusion: train the diffusion model of one subject (resumes after a kill)."""

from modalmerge.stages.train import train_subject
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
params = snakemake.params  # noqa: F821
out = {
    "model": snakemake.output.model,  # noqa: F821
    "log": snakemake.output.log_tsv,  # noqa: F821
    "summary": snakemake.output.summary,  # noqa: F821
    "checkpoint": params.checkpoint,
}
config = {"model": params.model, "diffusion": params.diffusion, "train": params.train}
summary = train_subject(snakemake.input.volumes, snakemake.input.split, config, out,  # noqa: F821
                        threads=snakemake.threads)  # noqa: F821
log.info("trained: %s", summary)
