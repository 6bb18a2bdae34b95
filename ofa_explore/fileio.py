"""Writing files so that a crash never leaves a half-written one under the final name."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NotFound, OutputNotWritable, literal


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A hidden temporary file beside ``path`` to write to; renamed to ``path`` when the block
    ends normally, removed when it raises (also on Ctrl-C). The one way this package writes files.

    ``suffix`` keeps the extension a writer needs to pick its format (``".tmp.tif"``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:  # named as the file the caller asked for, not the temporary one
        raise _not_writable(path, err) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` when a file can be created in its folder, which must exist: tried for real (a
    hidden file, removed at once), since permission bits do not tell (a read-only mount, /proc,
    a folder that refuses new files even to root). Otherwise an OFAError that names ``path``."""
    path = Path(path)
    try:
        if not os.access(path.parent, os.W_OK):  # what the permission bits say, when they say no
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path.parent))
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as err:
        raise _not_writable(path, err) from None
    os.close(fd)
    os.unlink(name)
    return path


def _not_writable(path: Path, err: OSError) -> OutputNotWritable | NotFound:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return NotFound(
            f"cannot write {literal(path)}: the folder {literal(folder)} does not exist",
            "create it first, or choose another {output}",
            path=str(path),
        )
    reason = f" ({literal(err.strerror)})" if err.strerror and err.errno not in _NO_WRITE else ""
    return OutputNotWritable(
        f"cannot write {literal(path)}: the folder {literal(folder)} is not writable{reason}",
        "choose another {output}",
        path=str(path),
    )


_NO_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT)


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
