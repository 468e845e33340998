"""evaluate_ssim: fidelity of the synthetic fMRI of one subject."""

from modalmerge.stages.evaluate import evaluate_subject
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
params, prep = snakemake.params.evaluate, snakemake.params.prep  # noqa: F821
summary = evaluate_subject(snakemake.input.volumes, snakemake.input.synthetic,  # noqa: F821
                           dict(snakemake.output.items()), seed=params["seed"],  # noqa: F821
                           n_permutations=params["n_permutations"],
                           preprocessing={"detrend": prep["detrend"], "standardize": prep["standardize"]})
log.info("fidelity: %s", summary)
