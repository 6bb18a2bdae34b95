"""Writing files so that a crash never leaves a half-written one under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NotFound


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A hidden temporary file beside ``path`` to write to; renamed to ``path`` when the block
    ends normally, removed when it raises (also on Ctrl-C). The one way this package writes files.

    ``suffix`` keeps the extension a writer needs to pick its format (``".tmp.tif"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through ``atomic_output``, flushed to disk before the rename."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished temporary file into place, with the permissions a new file would get
    (temporary files are created private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, final)


def existing_file(
    path: str | os.PathLike, what: str, folder_error: type[Exception], folder_hint: str
) -> Path:
    """``path`` as a Path when it is an existing file; a missing file (NotFound) or a folder
    (``folder_error``) is named."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{what} not found: {path}", "check the path", path=str(path))
    if path.is_dir():
        raise folder_error(f"{path} is a folder; {folder_hint}")
    return path
