"""Files that hold participants' data are readable and writable by their owner only.

The study database (and SQLite's WAL and shared-memory files beside it), the exported CSVs and the
link-signing secret name people or hold their answers; on a shared lab server other accounts must not
read them. Files are created with mode 0600 and new folders 0700 from the start, never opened up and
closed again, so there is no moment in which another account could open them.
"""
from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def restrict(path: str | Path) -> None:
    """Make an existing file owner-only (a file made by an older camstudy, or by SQLite itself);
    nothing happens if it does not exist or belongs to another account."""
    try:
        os.chmod(path, FILE_MODE)
    except (FileNotFoundError, PermissionError):
        pass


def create(path: str | Path) -> None:
    """Create an empty owner-only file unless one exists (then only restrict it)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        restrict(path)


def folder(path: str | Path) -> Path:
    """A folder for owner-only files: made owner-only if it is missing (with its parents); one that
    exists (a home folder, say) is left as its owner set it, only the files in it are restricted."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=FOLDER_MODE, parents=True)
        os.chmod(path, FOLDER_MODE)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to an owner-only file (replacing its contents)."""
    create(path)
    with open(path, "wb") as out:
        out.write(data)
    return Path(path)
