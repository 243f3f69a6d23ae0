"""Uploaded checkpoint archives: spooled, hashed, and unpacked without trusting them.

An archive (.tar.gz, .tgz, .tar or .zip) is unpacked into
``<uploads_dir>/<sha256 of the archive>/``, so the same bytes uploaded twice land
in the same folder. Before anything is written every member is checked: no
absolute path, no ``..`` component, nothing but regular files and directories
(no symlinks, hard links, devices or FIFOs), and the total unpacked size within
``max_bytes``. Tar members are checked one at a time as the stream yields them
(a million-member tar is refused at member 10,001, never listed whole), then
extracted with ``filter="data"``; zip members are copied by hand while counting the
bytes actually decompressed, so a lying size header cannot exhaust the disk.

Nothing is left behind: :func:`unpack_scratch` unpacks into a private scratch
folder that the caller inspects, and only an accepted checkpoint is moved to
``uploads/<sha256>`` (:func:`keep`); :func:`remove_scratch` deletes the scratch
on any refusal or error, and :func:`sweep_orphans` removes what a crash left.
Everything refused raises :class:`~service.errors.CheckpointRejected` with the reason.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from service.errors import CheckpointRejected

ArchiveFormat = Literal["tar", "zip"]
MAX_MEMBERS = 10_000
_CHUNK = 1024 * 1024


def archive_format(filename: str) -> ArchiveFormat:
    """The format named by an upload's file name; anything else is refused."""
    name = filename.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise CheckpointRejected(f"archive {filename!r} is not a .tar.gz, .tgz, .tar or .zip file")


def spool(stream: BinaryIO, dest: Path, max_bytes: int) -> str:
    """Copy ``stream`` to ``dest`` in chunks; return its sha256. Refuses more than ``max_bytes``."""
    digest = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise CheckpointRejected(f"archive is larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _check_name(name: str) -> PurePosixPath:
    if not name or "\x00" in name:
        raise CheckpointRejected("archive member with an empty or invalid name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise CheckpointRejected(f"archive member {name!r} has an absolute path")
    path = PurePosixPath(posix)
    if ".." in path.parts:
        raise CheckpointRejected(f"archive member {name!r} leaves the folder ('..')")
    return path


def _check_tar_member(member: tarfile.TarInfo) -> None:
    _check_name(member.name)
    if member.issym() or member.islnk():
        kind = "a symlink" if member.issym() else "a hard link"
        raise CheckpointRejected(f"archive member {member.name!r} is {kind}; refused")
    if not (member.isfile() or member.isdir()):
        raise CheckpointRejected(
            f"archive member {member.name!r} is not a regular file or directory"
        )


def _unpack_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    """Check the members as the stream yields them — refusing the 10,001st at once,
    never listing a million — then extract the checked ones."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members: list[tarfile.TarInfo] = []
            total = 0
            for member in tar:
                if len(members) == MAX_MEMBERS:
                    raise CheckpointRejected(f"archive has more than {MAX_MEMBERS} members")
                _check_tar_member(member)
                total += member.size
                if total > max_bytes:
                    raise CheckpointRejected(f"archive unpacks to more than {max_bytes} bytes")
                members.append(member)
            tar.extractall(dest, members=members, filter="data")
    except CheckpointRejected:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CheckpointRejected(f"archive is not a readable tar archive: {exc}") from exc


def _unpack_zip(archive: Path, dest: Path, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise CheckpointRejected(f"archive has more than {MAX_MEMBERS} members")
            for info in infos:
                _check_name(info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise CheckpointRejected(f"archive member {info.filename!r} is a symlink")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise CheckpointRejected(
                        f"archive member {info.filename!r} is not a regular file or directory"
                    )
            written = 0
            for info in infos:
                target = dest / _check_name(info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise CheckpointRejected(
                                f"archive unpacks to more than {max_bytes} bytes"
                            )
                        out.write(chunk)
    except CheckpointRejected:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, OSError, zlib.error) as exc:
        raise CheckpointRejected(f"archive is not a readable zip archive: {exc}") from exc


def _checkpoint_folder(root: Path) -> Path:
    """The unpacked checkpoint: the single top-level folder, or the root itself."""
    entries = list(root.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return root


SCRATCH = ".scratch"
INCOMING = ".incoming"


def unpack_scratch(archive: Path, fmt: ArchiveFormat, uploads_dir: Path, max_bytes: int) -> Path:
    """Unpack ``archive`` into a fresh scratch folder under ``uploads_dir/.scratch``.

    Returns the checkpoint folder inside it (see :func:`scratch_root`). The caller
    inspects it, then :func:`keep` moves it into place or :func:`remove_scratch`
    deletes it. A refused archive leaves nothing behind. Raises ``CheckpointRejected``.
    """
    scratch = uploads_dir / SCRATCH
    scratch.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="unpack-", dir=scratch))
    try:
        if fmt == "tar":
            _unpack_tar(archive, root, max_bytes)
        else:
            _unpack_zip(archive, root, max_bytes)
        return _checkpoint_folder(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def scratch_root(folder: Path, uploads_dir: Path) -> Path:
    """The scratch folder (``uploads/.scratch/unpack-*``) that holds ``folder``."""
    relative = folder.relative_to(uploads_dir / SCRATCH)
    return uploads_dir / SCRATCH / relative.parts[0]


def keep(folder: Path, uploads_dir: Path, digest: str) -> Path:
    """Move an accepted scratch checkpoint to ``uploads_dir/<digest>``; returns its new path.

    When the same archive was kept before (or a concurrent twin won the rename),
    the existing folder is used and the scratch removed.
    """
    root = scratch_root(folder, uploads_dir)
    final = uploads_dir / digest
    try:
        os.rename(root, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(root, ignore_errors=True)
    return final / folder.relative_to(root)


def remove_scratch(folder: Path, uploads_dir: Path) -> None:
    """Delete the scratch folder holding ``folder`` (no-op once kept or gone)."""
    try:
        root = scratch_root(folder, uploads_dir)
    except ValueError:
        return
    shutil.rmtree(root, ignore_errors=True)


def sweep_orphans(uploads_dir: Path, referenced: set[str], *, older_than: float) -> list[Path]:
    """Remove leftovers older than ``older_than`` seconds; returns what was removed.

    Leftovers: spooled archives and scratch folders a crash left behind, and
    ``uploads/<sha256>`` folders no candidate refers to (``referenced`` holds the
    folder names that candidates' checkpoint paths lie under).
    """
    import time

    cutoff = time.time() - older_than
    removed: list[Path] = []
    if not uploads_dir.is_dir():
        return removed
    candidates = [*uploads_dir.iterdir()]
    for sub in (INCOMING, SCRATCH):
        if (uploads_dir / sub).is_dir():
            candidates.extend((uploads_dir / sub).iterdir())
    for path in candidates:
        if path.name in (INCOMING, SCRATCH) or path.name in referenced:
            continue
        try:
            if path.lstat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
