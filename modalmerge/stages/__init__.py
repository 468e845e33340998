"""Stage runners, one per rule: read inputs, call the science (data, diffusion, training, analysis),
write outputs atomically, draw figures. The workflow scripts call these; nothing here imports
snakemake."""
