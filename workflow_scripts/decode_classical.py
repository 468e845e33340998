"""decode_classical: the classical decoders and the learning curve of one subject (beside the training)."""

from modalmerge.stages.decode import decode_classical_stage
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
accuracies = decode_classical_stage(
    snakemake.input.volumes, snakemake.params.decode, snakemake.output.json, threads=snakemake.threads,  # noqa: F821
)
log.info("classical decoders: %s", accuracies)
