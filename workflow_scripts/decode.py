"""decode: every decoder of one subject on the held-out runs."""

import numpy as np

from modalmerge.decoding import decode_subject, write_decoding_outputs
from modalmerge.workflow_support import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
params = snakemake.params.decode  # noqa: F821
use_model = params["diffusion"]
results, timings = decode_subject(
    snakemake.input.volumes,  # noqa: F821
    snakemake.input.model if use_model else None,  # noqa: F821
    snakemake.input.synthetic,  # noqa: F821
    params, device=snakemake.params.device, threads=snakemake.threads,  # noqa: F821
)
with np.load(snakemake.input.volumes) as volumes:  # noqa: F821
    class_names = volumes["class_names"][:-1]  # the last class is rest
write_decoding_outputs(results, timings, class_names, dict(snakemake.output.items()))  # noqa: F821
log.info("decoded: %s", {k: round(v["accuracy"], 3) for k, v in results.items()})
