#!/usr/bin/env bash
# The GPU work of one lent session, run on the device machine from the repository root:
#   0. (STEP_S > 0) bench/measure_training_step.py: the training step eager and captured in a CUDA graph,
#      with the numerical check, and (BASELINE_CODE set: a folder with an older package and its config.yaml,
#      e.g. `mkdir -p gpu_cache/baseline && git archive REV modalmerge config.yaml | tar x -C gpu_cache/baseline`)
#      that code's step;
#   1. (ABLATION_S > 0, default 330) bench/ablation.py: 4 variants x seeds 0 1 2, 9 workflows at a time on one GPU;
#   2. (LEARNING_CURVE_S > 0) bench/learning_curve.py: diffusion models trained on 1 and 3 runs, seeds 0-2;
#   3. the default workflow end to end, cold (data cached), snakemake --cores $(nproc); with E2E_SEEDS="0 1 2"
#      once per seed (train, sample and evaluate seeds), each timed.
# Needs the wheels in .whl (packages the machine lacks) and the data archive in gpu_cache/.
# Writes $OUT/step*.json, $OUT/ablation.tgz, $OUT/learning_curve.tgz, $OUT/e2e*.tgz and $OUT/log.txt.
set -u
cd "$(dirname "$0")/.."
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MODALMERGE_CACHE=$PWD/gpu_cache PYTHONUNBUFFERED=1
nvidia-smi -L || true; python3 -c "import torch, snakemake, nilearn; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
if [ "${STEP_S:-0}" -gt 0 ]; then
  [ -f results/prep/sub001/volumes.npz ] || python3 -m snakemake --cores 4 results/prep/sub001/volumes.npz >/dev/null
  started=$(date +%s)
  if [ -n "${BASELINE_CODE:-}" ]; then
    timeout "$STEP_S" python3 bench/measure_training_step.py --code "$BASELINE_CODE" --label baseline --graph none \
        --batches ${STEP_BATCHES:-4} --steps "${STEP_STEPS:-300}" --out "$OUT/step_baseline.json"
    echo "step baseline exit $? after $(( $(date +%s) - started )) s"
  fi
  timeout "$STEP_S" python3 bench/measure_training_step.py --batches ${STEP_BATCHES:-4} --steps "${STEP_STEPS:-300}" \
      --check --out "$OUT/step.json"
  echo "step exit $? after $(( $(date +%s) - started )) s"
  # the end-to-end run trains with the captured step only where the check above passed
  python3 - "$OUT/step.json" "${CONFIGFILE:-config.yaml}" /tmp/e2e_config.yaml <<'PY' || exit 1
import json, sys, yaml
from pathlib import Path
step, source, target = map(Path, sys.argv[1:])
check = json.loads(step.read_text()).get("check") if step.exists() else None
ok = bool(check) and check["graph_vs_eager_relative"] < 0.2
config = yaml.safe_load(source.read_text())
config["train"]["cuda_graph"] = "auto" if ok else "off"
target.write_text(yaml.safe_dump(config, sort_keys=False))
print("end to end with train.cuda_graph", config["train"]["cuda_graph"], "check", check)
PY
  CONFIGFILE=/tmp/e2e_config.yaml
fi
[ "${ABLATION_S:-330}" -gt 0 ] && {
started=$(date +%s)
timeout "${ABLATION_S:-330}" python3 bench/ablation.py --variants "${VARIANTS:-bench/ablation.yaml}" --seeds 0 1 2 --parallel 9 \
    --cores 2 --out /tmp/ablation --configfile "${CONFIGFILE:-config.yaml}"
echo "ablation exit $? after $(( $(date +%s) - started )) s"
python3 bench/ablation.py --variants "${VARIANTS:-bench/ablation.yaml}" --seeds 0 1 2 --out /tmp/ablation --summarise-only \
    --configfile "${CONFIGFILE:-config.yaml}"
(cd /tmp && find ablation \( -name '*.json' -o -name '*.md' -o -name '*.tsv' -o -name 'snakemake.log' -o -name 'config.yaml' \) \
    -not -path '*/results/data/*' -print0 | tar czf "$OUT/ablation.tgz" --null -T -)
}
if [ "${LEARNING_CURVE_S:-0}" -gt 0 ]; then
  started=$(date +%s)
  timeout "$LEARNING_CURVE_S" python3 bench/learning_curve.py --sizes 1 3 --seeds 0 1 2 --parallel 6 --cores 2 \
      --out /tmp/learning_curve --configfile "${CONFIGFILE:-config.yaml}"
  echo "learning curve exit $? after $(( $(date +%s) - started )) s"
  (cd /tmp && find learning_curve \( -name '*.json' -o -name '*.md' -o -name 'snakemake.log' \) -not -path '*/results/data/*' \
      -print0 | tar czf "$OUT/learning_curve.tgz" --null -T -)
fi
[ "${END_TO_END_S:-200}" -gt 0 ] || exit 0
# E2E_SEEDS="0 1 2": one cold run per seed (train, sample and evaluate seeds set to it), each timed
for seed in ${E2E_SEEDS:-none}; do
  name=e2e; config="${CONFIGFILE:-config.yaml}"
  if [ "$seed" != none ]; then
    name=e2e_seed-$seed; config=/tmp/config_seed-$seed.yaml
    python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); [c[b].__setitem__('seed', int(sys.argv[2])) for b in ('train', 'sample', 'evaluate')]; yaml.safe_dump(c, open(sys.argv[3], 'w'), sort_keys=False)" \
        "${CONFIGFILE:-config.yaml}" "$seed" "$config"
  fi
  started=$(date +%s)
  timeout "${END_TO_END_S:-200}" python3 bench/end_to_end.py --cores "$(nproc)" --out /tmp/$name --configfile "$config"
  echo "end to end ($name) exit $? after $(( $(date +%s) - started )) s"
  (cd /tmp && find $name \( -name '*.json' -o -name '*.tsv' -o -name '*.log' -o -name 'config.yaml' \) -not -path '*/results/data/*' \
      -print0 | tar czf "$OUT/$name.tgz" --null -T -)
done
