# Configuration validation and helpers shared by every rule file.
from snakemake.utils import min_version, validate

min_version("8.0")


validate(config, schema="../config.schema.yaml")

SUBJECTS = config["subjects"]


wildcard_constraints:
    subject="|".join(SUBJECTS),
