"""ModalMerge: a conditional spatiotemporal diffusion model of fMRI, with honest evaluation."""

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
