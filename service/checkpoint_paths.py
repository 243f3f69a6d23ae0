"""Checkpoint paths: a checkpoint is read only from under the configured roots.

Every path a user names (a candidate's checkpoint, a family's local base model) is resolved
here, symlinks and ``..`` included, before anything is read from it, and must land under one of
the allowed roots (``TUNEGATE_CHECKPOINT_ROOTS`` / ``TUNEGATE_MODEL_ROOTS``).
:func:`walk_within_roots` holds a folder's contents to the same rule: a symlink inside it is
followed only when its target stays under a root. What the files themselves may hold is
:mod:`service.checkpoints`' concern.

A path that does not exist or resolves outside every root raises
:class:`~service.errors.CheckpointNotVisible`; a symlink leaving the roots, a broken or looping
one, a special file (FIFO, device), an unknown user's ``~user`` or no configured root at all
raise :class:`~service.errors.CheckpointRejected`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from service.errors import CheckpointNotVisible, CheckpointRejected


def expand_home(raw: str, what: str = "path") -> Path:
    """``raw`` as a path with ``~`` / ``~user`` expanded.

    Raises :class:`CheckpointRejected` (422) for a user this machine does not know,
    where ``Path.expanduser`` would raise a bare RuntimeError.
    """
    try:
        return Path(raw).expanduser()
    except RuntimeError as exc:
        raise CheckpointRejected(f"{what} {raw!r} names an unknown user's home") from exc


def resolved_roots(roots: Sequence[Path]) -> list[Path]:
    """The allowed roots as real paths. Raises ``CheckpointRejected`` when there are none."""
    if not roots:
        raise CheckpointRejected("no allowed checkpoint roots are configured")
    return [Path(r).expanduser().resolve() for r in roots]


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_within_roots(path: Path, roots: Sequence[Path]) -> Path:
    """Resolve ``path`` (symlinks and ``..`` included) and require it under an allowed root.

    Returns the real path. Raises ``CheckpointNotVisible`` if it does not exist or
    resolves outside every root.
    """
    real_roots = resolved_roots(roots)
    try:
        real = Path(path).expanduser().resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise CheckpointNotVisible(f"checkpoint path {str(path)!r} does not exist") from exc
    if not _within(real, real_roots):
        raise CheckpointNotVisible(
            f"checkpoint path {str(path)!r} resolves to {str(real)!r}, outside the allowed roots "
            f"{[str(r) for r in real_roots]}"
        )
    return real


def walk_within_roots(folder: Path, roots: Sequence[Path]) -> Iterator[tuple[str, Path]]:
    """Yield (relative name, real path) for every regular file under ``folder``.

    ``folder`` and ``roots`` are real paths (:func:`resolve_within_roots`,
    :func:`resolved_roots`). Symlinks are followed only after checking that their target
    stays under an allowed root; a symlinked directory seen twice (a loop) is not
    re-entered. Raises ``CheckpointRejected`` for a symlink leaving the roots, a broken or
    looping symlink, or anything that is neither a regular file nor a directory.
    """
    seen_dirs = {folder}
    stack: list[tuple[str, Path]] = [("", folder)]
    while stack:
        prefix, directory = stack.pop()
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = f"{prefix}{entry.name}"
            link = Path(entry.path)
            try:
                real = link.resolve(strict=True)
            except (OSError, RuntimeError) as exc:
                raise CheckpointRejected(f"{rel!r} is a broken or looping symlink") from exc
            if not _within(real, roots):
                raise CheckpointRejected(
                    f"{rel!r} is a symlink to {str(real)!r}, outside the allowed roots"
                )
            mode = real.stat().st_mode
            if stat.S_ISDIR(mode):
                if real not in seen_dirs:
                    seen_dirs.add(real)
                    stack.append((f"{rel}/", real))
            elif stat.S_ISREG(mode):
                yield rel, real
            else:
                raise CheckpointRejected(f"{rel!r} is not a regular file or directory")
