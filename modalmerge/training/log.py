"""training_log.tsv: one row per ``log_every`` steps, rewritten from the checkpoint's rows on resume."""

from __future__ import annotations

from pathlib import Path

LOG_COLUMNS = ["step", "loss", "heldout_loss", "learning_rate", "wall_time_s", "validation_loss"]


class TrainingLog:
    """training_log.tsv, rewritten from the checkpoint's rows on resume, then appended to."""

    def __init__(self, path: str | Path | None, rows: list[list[float]]):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w") as handle:
                handle.write("\t".join(LOG_COLUMNS) + "\n")
                for row in rows:
                    handle.write(_format_row(row))

    def append(self, row: list[float]) -> None:
        if self.path:
            with open(self.path, "a") as handle:
                handle.write(_format_row(row))


def _format_row(row) -> str:
    step, loss, heldout, lr, wall, validation = row
    return f"{int(step)}\t{loss:.6f}\t{heldout:.6f}\t{lr:.3e}\t{wall:.3f}\t{validation:.6f}\n"
