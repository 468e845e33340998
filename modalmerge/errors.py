"""Errors raised on bad user input: each says which file or key, what is wrong, what to do."""


class ModalMergeInputError(ValueError):
    """Bad input data or configuration (a user-fixable problem, not a bug)."""
