"""Uploaded checkpoint archives: spooled, hashed, and unpacked without trusting them.

An archive (.tar.gz, .tgz, .tar or .zip) is unpacked into
``<uploads_dir>/<sha256 of the archive>/``, so the same bytes uploaded twice land
in the same folder. Before anything is written every member is checked: no
absolute path, no ``..`` component, nothing but regular files and directories
(no symlinks, hard links, devices or FIFOs), and the total unpacked size within
``max_bytes``. Tar extraction additionally runs with ``filter="data"``; zip
members are copied by hand while counting the bytes actually decompressed, so a
lying size header cannot exhaust the disk. Unpacking happens in a private
``.partial-*`` folder that is renamed into place only when complete.
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


def _check_tar(tar: tarfile.TarFile, max_bytes: int) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    if len(members) > MAX_MEMBERS:
        raise CheckpointRejected(f"archive has more than {MAX_MEMBERS} members")
    total = 0
    for member in members:
        _check_name(member.name)
        if member.issym() or member.islnk():
            kind = "a symlink" if member.issym() else "a hard link"
            raise CheckpointRejected(f"archive member {member.name!r} is {kind}; refused")
        if not (member.isfile() or member.isdir()):
            raise CheckpointRejected(
                f"archive member {member.name!r} is not a regular file or directory"
            )
        total += member.size
        if total > max_bytes:
            raise CheckpointRejected(f"archive unpacks to more than {max_bytes} bytes")
    return members


def _unpack_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _check_tar(tar, max_bytes)
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


def unpack(
    archive: Path, fmt: ArchiveFormat, uploads_dir: Path, digest: str, max_bytes: int
) -> Path:
    """Unpack ``archive`` into ``uploads_dir/<digest>/`` (once) and return the checkpoint folder.

    The folder is reused when the same archive was unpacked before; a refused
    archive leaves nothing behind. Raises ``CheckpointRejected``.
    """
    final = uploads_dir / digest
    if not final.is_dir():
        uploads_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{digest[:12]}-", dir=uploads_dir))
        try:
            if fmt == "tar":
                _unpack_tar(archive, partial, max_bytes)
            else:
                _unpack_zip(archive, partial, max_bytes)
            try:
                os.rename(partial, final)
            except OSError:
                if not final.is_dir():  # not a concurrent twin that won the rename
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return _checkpoint_folder(final)
