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
include: "rules/report.smk"


# On a cluster (profiles/slurm) these run on the submitting node: the download needs the
# internet, which compute nodes often lack, and the index page is a moment's work.
localrules:
    all,
    fetch_haxby,
    report_index,


rule all:
    input:
        rules.report_index.output.html,
    default_target: True


onsuccess:
    # point at the report only when this run built it (not after an intermediate target alone)
    if workflow_built_the_report():
        print(f"ModalMerge finished. Open the report: {rules.report_index.output.html}")
    else:
        print("ModalMerge finished: the requested targets are built (the report was not part of this run).")
