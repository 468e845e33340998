"""fetch-Haxby: checksum, safe extraction, caching, the real embedded data, nilearn offline, custom data."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from modalmerge import HAXBY_CATEGORIES
from modalmerge.data import sources as data_sources
from modalmerge.data.download import download_sdist, safe_extract
from modalmerge.data.layout import Dataset
from modalmerge.data.sources import fetch_dataset, labels_to_events
from modalmerge.errors import ModalMergeInputError


def make_tar(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


class RefusingClient:
    """Stands in for the package-index client where a test must prove no download happens."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("the package index was contacted although the archive was cached")


def test_cached_archive_with_right_checksum_is_used_without_download(tmp_path, monkeypatch):
    import pypi_simple
    archive = tmp_path / "pkg-1.0.tar.gz"
    archive.write_bytes(b"archive bytes")
    monkeypatch.setattr(pypi_simple, "PyPISimple", RefusingClient)
    digest = hashlib.sha256(b"archive bytes").hexdigest()
    assert download_sdist("pkg", "pkg-1.0.tar.gz", digest, tmp_path) == archive


def test_cached_archive_with_wrong_checksum_is_removed_and_reported(tmp_path):
    archive = tmp_path / "pkg-1.0.tar.gz"
    archive.write_bytes(b"tampered")
    with pytest.raises(ModalMergeInputError, match="Checksum mismatch.*pkg-1.0.tar.gz"):
        download_sdist("pkg", "pkg-1.0.tar.gz", "0" * 64, tmp_path)
    assert not archive.exists()


def test_download_with_wrong_checksum_leaves_nothing_behind(tmp_path, monkeypatch):
    import pypi_simple

    class FakeClient:
        def __init__(self, endpoint):
            self.endpoint = endpoint

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get_project_page(self, project):
            package = type("P", (), {"filename": "pkg-1.0.tar.gz"})()
            return type("Page", (), {"packages": [package]})()

        def download_package(self, package, path):
            Path(path).write_bytes(b"served by a compromised index")

    monkeypatch.setattr(pypi_simple, "PyPISimple", FakeClient)
    with pytest.raises(ModalMergeInputError, match="Checksum mismatch for downloaded"):
        download_sdist("pkg", "pkg-1.0.tar.gz", "0" * 64, tmp_path, index_url="file:///nowhere")
    assert list(tmp_path.iterdir()) == []


def test_safe_extract_takes_only_the_prefix(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", {"p/data/x.txt": b"x", "p/data/sub/y.txt": b"y", "p/other.txt": b"o"})
    out = safe_extract(archive, "p/data/", tmp_path / "out")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.txt")) == ["sub/y.txt", "x.txt"]


@pytest.mark.parametrize("members,symlinks", [
    ({"p/data/../../evil.txt": b"e"}, None),
    ({"p/data/ok.txt": b"ok"}, {"p/data/link": "/etc/passwd"}),
])
def test_safe_extract_refuses_escaping_members_and_writes_nothing(tmp_path, members, symlinks):
    archive = make_tar(tmp_path / "bad.tar.gz", members, symlinks)
    with pytest.raises(ModalMergeInputError, match="Refusing unsafe archive member"):
        safe_extract(archive, "p/data/", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_embedded_haxby_layout(embedded_dataset):
    dataset = Dataset.read(embedded_dataset)
    assert dataset.runs == list(range(1, 13))
    assert dataset.tr == 2.5
    assert dataset.categories == list(HAXBY_CATEGORIES)
    for run in dataset.runs:
        img = nib.load(dataset.bold_path(run))
        assert img.shape == (40, 20, 1, 121)
        events = dataset.events(run)
        assert sorted(events.trial_type) == sorted(HAXBY_CATEGORIES)
        assert np.allclose(events.duration, 22.5)
    mask = np.asarray(nib.load(dataset.mask_path("nonzero")).dataobj)
    assert mask.sum() == 530
    assert dataset.manifest["provenance"]["sha256"] == data_sources.EMBEDDED_ARCHIVE["sha256"]


def test_embedded_25mm_has_the_source_masks(embedded_dataset_25mm):
    dataset = Dataset.read(embedded_dataset_25mm)
    assert nib.load(dataset.bold_path(1)).shape == (6, 10, 10, 121)
    assert set(dataset.manifest["masks"]) == {"nonzero", "brain", "gray", "white", "vt", "hoc"}
    assert np.asarray(nib.load(dataset.mask_path("brain")).dataobj).sum() == 129


def test_embedded_second_fetch_uses_the_cache(tmp_path, embedded_dataset, monkeypatch):
    import pypi_simple
    monkeypatch.setattr(pypi_simple, "PyPISimple", RefusingClient)
    fetch_dataset({"source": "embedded", "embedded": {"resolution": "1slice"}}, "sub001", tmp_path / "again")
    assert (tmp_path / "again" / "dataset.json").exists()


def test_embedded_refuses_other_subjects(tmp_path):
    with pytest.raises(ModalMergeInputError, match="holds subject 'sub001' only"):
        fetch_dataset({"source": "embedded"}, "sub002", tmp_path / "x")


def lay_out_nilearn_haxby(data_dir: Path, subject: int = 2, n_runs: int = 3, per_run: int = 12) -> None:
    """Files where nilearn.datasets.fetch_haxby looks for them, so it downloads nothing."""
    root = data_dir / "haxby2001"
    sub = root / f"subj{subject}"
    sub.mkdir(parents=True)
    affine = np.diag([3.5, 3.75, 3.75, 1.0])
    rng = np.random.default_rng(0)
    shape = (6, 7, 5)
    brain = np.zeros(shape)
    brain[1:5, 1:6, 1:4] = 1
    bold = 50 + 500 * brain[..., None] + 10 * rng.normal(size=shape + (n_runs * per_run,))
    nib.save(nib.Nifti1Image(bold.astype(np.float32), affine), sub / "bold.nii.gz")
    block = ["rest"] * 2 + ["face"] * 4 + ["rest"] * 2 + ["house"] * 4
    labels = pd.DataFrame({"labels": block * n_runs, "chunks": np.repeat(np.arange(n_runs), per_run)})
    labels.to_csv(sub / "labels.txt", sep=" ", index=False)
    region = np.zeros(shape, np.uint8)
    region[2:4, 2:5, 1:4] = 1
    for name in ("mask4_vt", "mask8b_face_vt", "mask8b_house_vt", "mask8_face_vt", "mask8_house_vt"):
        nib.save(nib.Nifti1Image(region, affine), sub / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), affine), sub / "anat.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(shape, np.uint8), affine), root / "mask.nii.gz")
    (root / "MD5SUMS").write_text("")


def test_nilearn_source_offline_on_a_laid_out_directory(tmp_path):
    lay_out_nilearn_haxby(tmp_path / "nilearn_data")
    dest = fetch_dataset({"source": "nilearn", "categories": list(HAXBY_CATEGORIES),
                          "nilearn": {"data_dir": str(tmp_path / "nilearn_data")}}, "sub002", tmp_path / "out")
    dataset = Dataset.read(dest)
    assert dataset.runs == [1, 2, 3]
    assert nib.load(dataset.bold_path(2)).shape == (6, 7, 5, 12)
    events = dataset.events(1)
    assert events.to_dict("list") == {"onset": [5.0, 20.0], "duration": [10.0, 10.0], "trial_type": ["face", "house"]}
    assert {"vt", "face", "house", "nonzero"} <= set(dataset.manifest["masks"])


def test_labels_to_events_merges_blocks():
    events = labels_to_events(["rest", "cat", "cat", "rest", "cat", "face"], tr=2.0)
    assert events.values.tolist() == [[2.0, 4.0, "cat"], [8.0, 2.0, "cat"], [10.0, 2.0, "face"]]


def test_custom_source(tmp_path, tiny_custom_study):
    dataset = Dataset.read(fetch_dataset(tiny_custom_study, "s01", tmp_path / "out"))
    assert dataset.runs == [1, 2, 3] and dataset.tr == 2.0
    assert set(dataset.manifest["masks"]) == {"custom", "nonzero"}


def test_custom_source_reports_missing_keys(tmp_path):
    with pytest.raises(ModalMergeInputError, match=r"data.custom lacks \['bold', 'events', 'mask', 'runs', 'tr'\]"):
        fetch_dataset({"source": "custom", "custom": None}, "s01", tmp_path / "out")


def corrupt_truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def put_nan(path: Path) -> None:
    img = nib.load(path)
    data = img.get_fdata().astype(np.float32)
    data[1, 1, 1, 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), path)


def shift_mask_affine(path: Path) -> None:
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 7
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), path)


def wrong_mask_shape(path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((4, 5, 4), np.uint8), nib.load(path).affine), path)


def unknown_category(path: Path) -> None:
    pd.DataFrame({"onset": [0.0], "duration": [4.0], "trial_type": ["banana"]}).to_csv(path, sep="\t", index=False)


def onset_outside_run(path: Path) -> None:
    pd.DataFrame({"onset": [36.0], "duration": [10.0], "trial_type": ["face"]}).to_csv(path, sep="\t", index=False)


@pytest.mark.parametrize("damage,target,message", [
    (corrupt_truncate, "bold2", "corrupt or truncated"),
    (put_nan, "bold2", "NaN or infinite"),
    (shift_mask_affine, "mask", "different affine"),
    (wrong_mask_shape, "mask", r"Expected shape \(4, 5, 3\)"),
    (unknown_category, "events2", r"unknown categories \['banana'\]"),
    (onset_outside_run, "events2", "outside the run"),
])
def test_bad_input_gets_a_specific_error_and_no_output(tmp_path, tiny_custom_study, damage, target, message):
    custom = tiny_custom_study["custom"]
    paths = {"bold2": Path(custom["bold"].format(run=2)), "events2": Path(custom["events"].format(run=2)),
             "mask": Path(custom["mask"])}
    damage(paths[target])
    with pytest.raises(ModalMergeInputError, match=message):
        fetch_dataset(tiny_custom_study, "s01", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_a_damaged_extracted_cache_is_re_extracted_by_the_fetch(tmp_path, embedded_dataset, monkeypatch):
    """A truncated file inside the extracted cache is found by its checksum and replaced, offline."""
    import pypi_simple
    from modalmerge.data.download import default_cache_dir
    monkeypatch.setattr(pypi_simple, "PyPISimple", RefusingClient)
    cache = tmp_path / "cache"
    spec = data_sources.EMBEDDED_ARCHIVE
    cache.mkdir()
    (cache / spec["filename"]).write_bytes((default_cache_dir() / spec["filename"]).read_bytes())
    config = {"source": "embedded", "embedded": {"resolution": "1slice"}, "cache_dir": str(cache)}
    fetch_dataset(config, "sub001", tmp_path / "first")
    extracted = cache / f"{spec['project']}-{spec['version']}-haxby2001"
    bold = extracted / "sub001/BOLD/task001_run004/bold_1slice.nii.gz"
    intact = bold.read_bytes()
    bold.write_bytes(intact[: len(intact) // 2])
    with pytest.warns(UserWarning, match="incomplete or damaged: extracting it again"):
        fetch_dataset(config, "sub001", tmp_path / "second")
    assert bold.read_bytes() == intact
    first, second = Dataset.read(tmp_path / "first"), Dataset.read(tmp_path / "second")
    assert nib.load(second.bold_path(4)).get_fdata().tobytes() == nib.load(first.bold_path(4)).get_fdata().tobytes()
