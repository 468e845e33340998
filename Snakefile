# ModalMerge: a conditional spatiotemporal diffusion model of fMRI, evaluated honestly.
# Read top to bottom, the included rule files are the table of contents of the science.

configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/evaluate.smk"
include: "rules/decode.smk"
include: "rules/anomalies.smk"


rule all:
    input:
        expand(rules.mask_and_normalize.output.volumes, subject=SUBJECTS),
        expand(rules.sample.output.summary, subject=SUBJECTS),
        expand(rules.evaluate_ssim.output.json, subject=SUBJECTS),
        expand(rules.decode.output.json, subject=SUBJECTS),
        expand(rules.score_auc.output.json, subject=SUBJECTS),
    default_target: True
