"""What every synthetic set is scored against, besides the held-out runs themselves: the classical
generators, real training runs of the synthetic set's size, and every set preprocessed like a real run.

Split from :mod:`.fidelity` (which assembles ``fidelity.json``) so that bench scripts can score any
set the way the evaluate stage does (``heldout_reference`` + :func:`~.generator_baselines.set_metrics`).
"""

from __future__ import annotations

import numpy as np
from nilearn.signal import clean

from ..data.dataset import PreparedData
from . import fidelity_metrics as F
from .decoding import linear_svm
from .generator_baselines import LinearGaussianGenerator, set_metrics, within_category_covariance
from .residual_dynamics import ResidualColouring

GENERATOR_NOTE = ("classical generators evaluated with the same numbers on the held-out runs' label sequences: "
                  "gaussian_var1 = training category means + voxelwise AR(1) residual with Ledoit-Wolf spatially "
                  "correlated innovations (fitted on the training runs only); gaussian_coloured = training category means "
                  "+ Gaussian residual of the within-category Ledoit-Wolf covariance, each of its eigencomponents given "
                  "the training runs' autocorrelation at lags 0 .. max_lag (the linear part of sample.residual_dynamics: "
                  "coloured)")


def generator_sets(data: PreparedData, seed: int = 0, max_lag: int = 7) -> dict:
    """The classical generators, fitted on the training runs and sampled along the held-out runs'
    designs: ``{name: (X (n, x, y, z), labels, synthetic-run ids)}`` for ``gaussian_var1`` and
    ``gaussian_coloured`` (lags up to ``max_lag``, the sample stage's)."""
    train, test, mask = ~data.is_test, data.is_test, data.mask
    fit = (data.X[train][:, mask], data.label_ids[train], data.runs[train])
    designs = [data.label_ids[test & (data.runs == run)] for run in data.test_runs]
    segments = np.repeat(np.arange(len(designs)), [len(d) for d in designs])
    out = {}
    for name, generator in (("gaussian_var1", LinearGaussianGenerator(seed)),
                            ("gaussian_coloured", ResidualColouring(max_lag, seed))):
        X = np.zeros((sum(len(d) for d in designs), *mask.shape), np.float32)
        X[:, mask] = generator.fit(*fit).sample(designs)
        out[name] = (X, np.concatenate(designs), segments)
    return out


def generator_baselines(data: PreparedData, real: dict, max_lag: int = 7, sets: dict | None = None) -> dict:
    """The classical generators' sets (``sets``, or :func:`generator_sets` with the evaluation seed)
    scored with :func:`set_metrics` like the model."""
    sets = sets if sets is not None else generator_sets(data, real["seed"], max_lag)
    return {name: set_metrics(X, labels, segments, **real) for name, (X, labels, segments) in sets.items()}


def heldout_reference(data: PreparedData, seed: int = 0, n_permutations: int = 200) -> dict:
    """What :func:`set_metrics` scores every set against: the held-out and training volumes, the mask,
    the SSIM window and range, the category decoder fitted on the training runs, and the training runs'
    within-category eigenvectors (strongest first), as keyword arguments."""
    train, test, mask = ~data.is_test, data.is_test, data.mask
    X_train, y_train = data.X[train], data.label_ids[train]
    A_train, in_categories = X_train[:, mask], np.isin(y_train, data.categories)
    return dict(X_test=data.X[test], y_test=data.label_ids[test], X_train=X_train, y_train=y_train, mask=mask,
                categories=data.categories, window=F.ssim_window(mask),
                data_range=float(A_train.max() - A_train.min()),
                decoder=linear_svm().fit(A_train[in_categories], y_train[in_categories]), seed=seed,
                n_permutations=n_permutations,
                basis=np.linalg.eigh(within_category_covariance(A_train, y_train))[1][:, ::-1])


def real_runs_reference(data: PreparedData, real: dict, n_runs: int, groups: list | None = None) -> dict:
    """Real training runs scored as if they were a synthetic set of the same size: what real data of
    this subject reaches on every set-level measure at the synthetic set's number of runs.

    Connectivity, MMD², C2ST and TSTR depend on how many volumes a set has (a correlation matrix or
    a decoder estimated from 363 volumes is noisier than from 1089), so the ceilings computed from
    all training runs are not reachable by a synthetic set of three runs. Here the training runs are
    cut into disjoint groups of ``n_runs`` consecutive runs; each group is scored with
    :func:`set_metrics` against the held-out runs, with the training set (memorisation) and the
    category-fidelity decoder taken from the other training runs. Returns the groups, each group's
    numbers, and ``{"groups": [], "note"}`` where fewer than ``n_runs`` training runs exist. ``groups``
    (lists of training runs) replaces the disjoint groups (``bench/real_triples.py`` scores every
    combination).
    """
    runs, note = data.train_runs, REAL_RUNS_NOTE
    if groups is None:
        groups = [runs[i:i + n_runs] for i in range(0, len(runs) - n_runs + 1, n_runs)]
    else:
        note = "the given sets of real training runs" + REAL_RUNS_NOTE[REAL_RUNS_NOTE.index(", each as many"):]
    if not groups:
        return {"runs_per_group": n_runs, "groups": [], "per_group": [],
                "note": f"not computed: {len(runs)} training runs, fewer than the synthetic set's {n_runs} runs"}
    mask, categories = real["mask"], real["categories"]
    train = ~data.is_test
    per_group = []
    for group in groups:
        inside = np.isin(data.runs, group)
        others = train & ~inside
        A_others, y_others = data.X[others][:, mask], data.label_ids[others]
        in_categories = np.isin(y_others, categories)
        scored = dict(real, X_train=data.X[others], y_train=y_others,
                      decoder=linear_svm().fit(A_others[in_categories], y_others[in_categories]))
        per_group.append(set_metrics(data.X[inside], data.label_ids[inside], data.runs[inside], **scored))
    return {"runs_per_group": n_runs, "groups": [[int(r) for r in g] for g in groups], "per_group": per_group,
            "note": note}


REAL_RUNS_NOTE = ("disjoint groups of real training runs, each as many runs as the synthetic set, scored like a "
                  "generator against the held-out runs (memorisation and category fidelity against the other "
                  "training runs): the level real data reaches on each measure at the synthetic set's size. A "
                  "generator whose number lies inside the groups' range is as good as new real data on that measure")


def preprocessed_like_real(X: np.ndarray, segments: np.ndarray, mask: np.ndarray, detrend: bool = True,
                           standardize="zscore_sample") -> np.ndarray:
    """Each synthetic run (``segments``: one id per run) put under the constraint mask-and-normalize
    leaves on every real run, voxel by voxel over the run: linear detrending (``detrend``), then
    ``standardize`` as the ``prep`` block names it (``"zscore_sample"``: mean 0, sample sd 1;
    ``"psc"``: percent signal change leaves the run's mean at 0, which is all that can be asked of a set
    already on that scale; ``False``: nothing more). Real runs come back unchanged (up to rounding)."""
    if standardize not in ("zscore_sample", "psc", False):
        raise ValueError(f"standardize is {standardize!r}; prep.standardize takes zscore_sample, psc or false")
    A = X[:, mask].astype(np.float64)
    for run in np.unique(segments):
        rows = segments == run
        if detrend or standardize == "zscore_sample":
            A[rows] = clean(A[rows], detrend=bool(detrend), standardize="zscore_sample" if standardize == "zscore_sample" else None)
        if standardize == "psc":
            A[rows] -= A[rows].mean(0)
    out = X.copy()
    out[:, mask] = A
    return out


def preprocessed_reference(X_syn, y_syn, segments, generator_sets_: dict, real: dict, preprocessing: dict) -> dict:
    """The set-level numbers with every synthetic run (the model's and each classical generator's)
    first put through :func:`preprocessed_like_real` with ``preprocessing`` (the ``prep`` block's
    ``detrend`` and ``standardize``). Real runs, the held-out ones and the same-size reference groups,
    carry that constraint already, so these numbers compare like with like."""
    constrain = lambda X, seg: preprocessed_like_real(X, seg, real["mask"], **preprocessing)
    return {"synthetic": set_metrics(constrain(X_syn, segments), y_syn, segments, **real),
            "generator_baselines": {name: set_metrics(constrain(X, seg), labels, seg, **real)
                                    for name, (X, labels, seg) in generator_sets_.items()},
            "preprocessing": dict(preprocessing), "note": PREPROCESSED_NOTE}


PREPROCESSED_NOTE = ("every synthetic run, the model's and each classical generator's, detrended and standardised voxel by "
                     "voxel over the run as mask-and-normalize did each real run, then scored like the plain sets. Every "
                     "real run (held out or in the same-size reference) carries that constraint, and a set that shares it "
                     "with the held-out runs looks closer to them on the C2STs and MMD² (bench/README.md 33, 37): these "
                     "numbers compare synthetic and real sets on equal terms. The linear C2ST is then far below 0.5 for "
                     "every set, real ones included (the constraint's artefact), so only its comparison between sets means "
                     "anything")
