"""decode: every decoder of one subject on the held-out runs."""

from modalmerge.stages.decode import decode_stage
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
params = snakemake.params.decode  # noqa: F821
accuracies = decode_stage(
    snakemake.input.volumes,  # noqa: F821
    snakemake.input.model if params["diffusion"] else None,  # noqa: F821
    snakemake.input.synthetic,  # noqa: F821
    params, dict(snakemake.output.items()), device=snakemake.params.device, precision=snakemake.params.precision, threads=snakemake.threads,  # noqa: F821
    classical_path=snakemake.input.classical,  # noqa: F821
)
log.info("decoded: %s", accuracies)
