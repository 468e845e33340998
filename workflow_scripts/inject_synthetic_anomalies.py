"""inject_synthetic_anomalies: anomalies with ground truth in held-out clips of one subject."""

import copy

from modalmerge.stages.anomalies import inject_subject
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
summary = inject_subject(snakemake.input.volumes, copy.deepcopy(dict(snakemake.params.anomalies)),  # noqa: F821
                         dict(snakemake.output.items()), clip_length=snakemake.params.clip_length)  # noqa: F821
log.info("injected: %s", summary)
