"""Training step time alone and beside one busy process, for OpenMP wait settings (2 CPU threads).

    python bench/measure_contention.py            # prints one JSON line per setting and condition

Each measurement runs in a fresh process (OpenMP reads its settings when torch loads): the median
of 10 default-model training steps (37x19x1 grid, 4 clips of 8) after 3 warm-up steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SETTINGS = {"libgomp default": {"GOMP_SPINCOUNT": "300000"}, "GOMP_SPINCOUNT=1000 (modalmerge's)": {},
            "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}


def step_time() -> float:
    import modalmerge  # noqa: F401  (sets GOMP_SPINCOUNT unless given)
    import torch
    from modalmerge.diffusion.gaussian import GaussianDiffusion
    from modalmerge.diffusion.schedulers import Scheduler
    from modalmerge.model import SpatioTemporalDenoiser
    torch.set_num_threads(2)
    torch.manual_seed(0)
    grid = (37, 19, 1)
    network = SpatioTemporalDenoiser(grid, 8, 9)
    diffusion = GaussianDiffusion(network, Scheduler(1000), torch.ones(grid))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    x0, labels = torch.randn(4, 8, *grid), torch.randint(0, 9, (4, 8))
    times = []
    for _ in range(13):
        started = time.perf_counter()
        loss = diffusion(x0, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return sorted(times[3:])[5]


def main() -> None:
    if sys.argv[1:] == ["--one"]:
        print(step_time())
        return
    for name, extra in SETTINGS.items():
        env = {key: value for key, value in os.environ.items() if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
        env.update(extra)
        for contended in (False, True):
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if contended else None
            try:
                seconds = float(subprocess.run([sys.executable, __file__, "--one"], env=env, capture_output=True,
                                               text=True, check=True).stdout)
            finally:
                if burner:
                    burner.kill()
            print(json.dumps({"setting": name, "other_busy_process": contended, "step_s": round(seconds, 3)}), flush=True)


if __name__ == "__main__":
    main()
