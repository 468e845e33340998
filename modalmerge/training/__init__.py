"""Training layer: the trainer, EMA and checkpoints of a run, and data-parallel launch (torchrun)."""
