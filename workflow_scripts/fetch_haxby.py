"""fetch_haxby: write the normalised data layout for one subject."""

from modalmerge.data.sources import fetch_dataset
from modalmerge.stages.logs import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821 (snakemake is injected by the script directive)
subject = snakemake.wildcards.subject  # noqa: F821
fetch_dataset(snakemake.params.data, subject, snakemake.output.dataset)  # noqa: F821
log.info("fetched %s into %s", subject, snakemake.output.dataset)  # noqa: F821
