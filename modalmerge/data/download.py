"""Download a source distribution by package name from the user's package index, check its sha256,
and extract one folder of it safely; the download cache lives outside ``results/``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

from ..atomic import atomic_directory
from ..errors import ModalMergeInputError


# --------------------------------------------------------------------------- caching and download
def default_cache_dir() -> Path:
    """Download cache: ``$MODALMERGE_CACHE`` or ``~/.cache/modalmerge`` (survives ``rm -r results``)."""
    return Path(os.environ.get("MODALMERGE_CACHE", Path.home() / ".cache" / "modalmerge"))


def configured_index_url() -> str | None:
    """The package index the user's pip uses (``PIP_INDEX_URL`` or ``pip config``), if any."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    url = result.stdout.strip()
    return url if result.returncode == 0 and url else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(project: str, filename: str, sha256: str, cache_dir: Path, index_url: str | None = None) -> Path:
    """Return the cached source archive ``filename`` of ``project``, downloading it once.

    The archive is verified against ``sha256`` after download and on every cache hit; a file
    that does not match is removed and reported, never used.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / filename
    if target.exists():
        found = sha256_of(target)
        if found == sha256:
            return target
        target.unlink()
        raise ModalMergeInputError(
            f"Checksum mismatch for cached archive {target}: expected sha256 {sha256}, got {found}. "
            "The corrupt file was removed; run the workflow again to download it afresh."
        )
    import pypi_simple  # imported here so offline users of other sources never need it

    cache_dir.mkdir(parents=True, exist_ok=True)
    endpoint = index_url or configured_index_url() or pypi_simple.PYPI_SIMPLE_ENDPOINT
    partial = target.with_name(target.name + ".part")
    try:
        with pypi_simple.PyPISimple(endpoint=endpoint) as client:
            page = client.get_project_page(project)
            matches = [pkg for pkg in page.packages if pkg.filename == filename]
            if not matches:
                raise ModalMergeInputError(
                    f"The package index {endpoint} lists no file {filename} for project {project}. "
                    "Check your pip index configuration (pip config get global.index-url)."
                )
            client.download_package(matches[0], partial)
    except ModalMergeInputError:
        raise
    except Exception as err:  # network errors differ by client version; report them in one voice
        partial.unlink(missing_ok=True)
        raise ModalMergeInputError(
            f"Could not download {filename} from the package index {endpoint}: {type(err).__name__}: {err}. "
            f"Check your network and pip index, or place the file at {target} yourself."
        ) from err
    found = sha256_of(partial)
    if found != sha256:
        partial.unlink(missing_ok=True)
        raise ModalMergeInputError(
            f"Checksum mismatch for downloaded {filename} from {endpoint}: expected sha256 {sha256}, got {found}. "
            "The download was discarded; the index may serve a different file than the one this workflow pins."
        )
    os.replace(partial, target)
    return target


def safe_extract(archive: Path, member_prefix: str, dest: Path) -> Path:
    """Extract only the members under ``member_prefix`` into ``dest``; refuse unsafe members.

    A member whose path is absolute, contains ``..``, or is a link or device is refused
    before anything is written (path traversal and link attacks).
    """
    dest = Path(dest).resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(member_prefix)]
        if not members:
            raise ModalMergeInputError(f"Archive {archive} holds no member under {member_prefix}.")
        for member in members:
            relative = member.name[len(member_prefix):]
            target = (dest / relative).resolve()
            unsafe = (
                os.path.isabs(member.name)
                or ".." in Path(member.name).parts
                or not (target == dest or dest in target.parents)
                or not (member.isfile() or member.isdir())
            )
            if unsafe:
                raise ModalMergeInputError(
                    f"Refusing unsafe archive member {member.name!r} in {archive}: it is a link, a device "
                    "or a path that would escape the extraction folder."
                )
        for member in members:
            relative = member.name[len(member_prefix):]
            if not relative:
                continue
            target = dest / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
        digests = {str(p.relative_to(dest)): sha256_of(p) for p in sorted(dest.rglob("*")) if p.is_file()}
        (dest / EXTRACTED_MANIFEST).write_text(json.dumps(digests, indent=1))
    return dest


EXTRACTED_MANIFEST = ".sha256.json"


def extraction_is_intact(folder: Path) -> bool:
    """True when ``folder`` holds exactly what :func:`safe_extract` wrote (checked against the sha256
    of every file it recorded): a truncated, edited or deleted file makes it False."""
    manifest = folder / EXTRACTED_MANIFEST
    if not manifest.exists():
        return False
    try:
        digests = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    return all((folder / name).is_file() and sha256_of(folder / name) == digest for name, digest in digests.items())


def ensure_extracted(archive: Path, member_prefix: str, folder: Path) -> Path:
    """Extract ``member_prefix`` of ``archive`` into ``folder`` unless an intact extraction is there;
    a damaged one is replaced whole (the fetch stage repairs its own cache)."""
    if extraction_is_intact(folder):
        return folder
    if folder.exists():
        warnings.warn(f"The extracted data in {folder} is incomplete or damaged: extracting it again from {archive}.",
                      UserWarning, stacklevel=2)
    with atomic_directory(folder) as tmp:
        safe_extract(archive, member_prefix, tmp)
    return folder
