"""End-to-end benchmark: a cold run of the workflow, per-rule seconds from Snakemake's benchmark
files, and the ratio to a baseline revision run the same way on the same machine.

    python bench/end_to_end.py                                # this checkout, default config
    python bench/end_to_end.py --baseline 75a12db             # and main at that commit, one after the other
    python bench/end_to_end.py --configfile tiny.yaml --baseline HEAD~5 --baseline-configfile tiny.yaml --cores 2

Each run happens in a fresh folder (only the download cache is shared), with the code of its
revision (a detached ``git worktree`` for the baseline, imported through ``PYTHONPATH``), and
``--cores`` as given. The baseline runs with its own revision's ``config.yaml`` (a newer
configuration may hold keys its schema refuses) unless ``--baseline-configfile`` says otherwise. Prints a table (rule, seconds, baseline seconds, baseline / this) and writes
it as TSV next to the runs. Machines here differ up to threefold between sessions: compare only
ratios measured in one call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RULES = ("fetch_haxby", "mask_and_normalize", "train_diffusion", "sample", "evaluate_ssim", "decode_classical", "decode",
         "inject_synthetic_anomalies", "score_auc", "report")


def cold_run(code: Path, configfile: Path, folder: Path, cores: int, subject: str) -> dict:
    """Run the whole workflow of the checkout ``code`` in ``folder``; per-rule seconds and the wall total."""
    folder.mkdir(parents=True)
    shutil.copy(configfile, folder / "config.yaml")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(code / "Snakefile"), "--directory", str(folder),
                    "--configfile", str(folder / "config.yaml"), "--cores", str(cores), "--resources", "gpu=1"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = {"total (wall)": time.perf_counter() - started}
    for rule in RULES:
        path = folder / "results" / "benchmarks" / rule / f"{subject}.tsv"
        if path.exists():
            seconds[rule] = float(pd.read_csv(path, sep="\t")["s"].iloc[0])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--baseline", help="a git revision to run the same way before this checkout")
    parser.add_argument("--baseline-configfile", type=Path, default=None,
                        help="the baseline's configuration (default: the config.yaml of the baseline revision: its own "
                             "defaults, which its schema accepts)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="modalmerge-e2e-"))
    results = {}
    if args.baseline:
        worktree = out / "baseline-code"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.baseline], check=True,
                       stdout=subprocess.DEVNULL)
        try:
            results["baseline"] = cold_run(worktree, args.baseline_configfile or worktree / "config.yaml", out / "baseline",
                                           args.cores, args.subject)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
    results["this"] = cold_run(REPO, args.configfile, out / "this", args.cores, args.subject)
    table = pd.DataFrame(results).rename_axis("rule")
    if "baseline" in table:
        table["baseline / this"] = table["baseline"] / table["this"]
    table.to_csv(out / "end_to_end.tsv", sep="\t", float_format="%.2f")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"runs and end_to_end.tsv in {out}")


if __name__ == "__main__":
    main()
