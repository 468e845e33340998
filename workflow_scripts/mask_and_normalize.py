"""mask_and_normalize: masked, per-run normalised volumes, labels, runs and the split."""

from modalmerge.stages.prepare import prepare_subject
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
prep = snakemake.params.prep  # noqa: F821
summary = prepare_subject(
    snakemake.input.dataset,  # noqa: F821
    dict(snakemake.output.items()),  # noqa: F821
    mask=prep["mask"],
    detrend=prep["detrend"],
    standardize=prep["standardize"],
    hemodynamic_shift_volumes=prep["hemodynamic_shift_volumes"],
    test_runs=prep["split"]["test_runs"],
    n_folds=prep["split"]["n_folds"],
    exclude_runs=prep["split"]["exclude_runs"],
    drop_constant_voxels=prep["drop_constant_voxels"],
)
log.info("prepared: %s", summary)
