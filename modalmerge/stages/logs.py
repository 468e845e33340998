"""Helpers for the thin workflow scripts: logging to the rule's log file and to the terminal."""

from __future__ import annotations

import logging
import sys


def setup_logging(log_path: str | None) -> logging.Logger:
    """Log to ``log_path`` (the rule's ``log:``) and to stderr; record uncaught errors in the log too."""
    logger = logging.getLogger("modalmerge")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)

    def log_uncaught(exc_type, exc, tb):
        logger.error("%s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = log_uncaught
    return logger
