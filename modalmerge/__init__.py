"""ModalMerge: a conditional spatiotemporal diffusion model of fMRI, with honest evaluation."""

import os

# OpenMP threads that wait for work spin 300,000 times before sleeping (libgomp's default), so a
# 2-thread training step slowed 3.3x when one other busy process shared 2 cores (0.63 -> 2.04 s);
# with 1,000 spins it slows 2.0x and is as fast alone (0.64 s). Read once, when torch loads: this
# module is imported before torch by every workflow script. A value the user set is kept.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

__version__ = "0.1.0"

HAXBY_CATEGORIES = (
    "house",
    "scrambledpix",
    "cat",
    "shoe",
    "bottle",
    "scissors",
    "chair",
    "face",
)
REST_LABEL = "rest"
