"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write a whole file or nothing: a temporary file in the same folder, then a rename."""
    temporary = _staged(path, content)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_new(path: Path, content: str | bytes) -> bool:
    """Write a file that must not exist yet, whole or not at all; False (and nothing written)
    when it exists: what `newsletter init` writes never replaces an editor's file."""
    temporary = _staged(path, content)
    try:
        os.link(temporary, path)  # refuses an existing file, where a rename would replace it
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _staged(path: Path, content: str | bytes) -> Path:
    """The content in a temporary file beside `path`, with the mode a new file gets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; these are to be shared
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
