"""Writing the files routewatch produces: reports, policy files, a new project.

``write_atomic`` replaces a file in one rename, so a reader sees the old text or the
new, never half; ``OutputError`` says which path could not be written and why, so a
command ends with that line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from routewatch.errors import OutputError

NEW_FILE_MODE = 0o644
"""A new file's permissions; a replaced file keeps its own."""


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents as needed.

    Raises:
        OutputError: it cannot be created (a file is in the way, no permission).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {folder}: {_reason(exc)}") from None


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in place, creating its folder.

    Raises:
        OutputError: the folder or the file cannot be written.
    """
    make_folder(path.parent)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None


def write_atomic(path: Path, text: str) -> Path:
    """Replace the file at ``path`` with ``text`` in one rename; returns the path written.

    A symbolic link is written through (its target is replaced, the link kept), and a
    path that is not a regular file (``/dev/stdout``, a named pipe) is written to in
    place, since renaming over it would replace the device or pipe with a file.
    A replaced file keeps its permissions.

    Raises:
        OutputError: the folder or the file cannot be written.
    """
    target = Path(os.path.realpath(path))
    try:
        existing = target.stat()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        if stat.S_ISDIR(existing.st_mode):
            raise OutputError(f"cannot write {path}: it is a folder")
        write_text(target, text)
        return path
    make_folder(target.parent)
    mode = stat.S_IMODE(existing.st_mode) if existing is not None else NEW_FILE_MODE
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        hint = ""
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            # Writable or not, the file itself is never opened: say what must change.
            hint = (
                "; the file is replaced through a temporary file beside it, so the folder "
                "must be writable"
            )
        raise OutputError(
            f"cannot write {path}: cannot create a file in its folder {target.parent} "
            f"({_reason(exc)}){hint}"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if existing is not None:
            _keep_owner(tmp, existing, path)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _keep_owner(tmp: str, existing: os.stat_result, path: Path) -> None:
    """Give the new file the replaced one's owner and group, as far as this process may.

    A gateway reading its config as another user (``chown litellm``, mode 0600) must
    still read it after the replace. Only root may give a file away (any user may give
    one to a group it belongs to). Where the owner cannot be kept and others may not
    read the file, the replace is refused: the file's reader would lose it.

    Raises:
        OutputError: the owner cannot be kept and the file is not readable by others.
    """
    owner = (existing.st_uid, existing.st_gid)
    made = os.stat(tmp)  # a setgid folder gives its group, not this process's
    if (made.st_uid, made.st_gid) == owner:
        return
    try:
        os.chown(tmp, *owner)
        return
    except OSError:  # not permitted, or an id this user namespace does not map
        pass
    if existing.st_mode & stat.S_IROTH:
        # Readable by every user whoever owns it; keep at least the group if allowed.
        with contextlib.suppress(OSError):
            os.chown(tmp, -1, existing.st_gid)
        return
    raise OutputError(
        f"cannot write {path}: it belongs to uid {existing.st_uid} and gid {existing.st_gid}, "
        f"and the new file would be uid {made.st_uid} and gid {made.st_gid}, which may keep "
        "its reader out; run routewatch as its owner (in its group) or as root, or make "
        "the file readable by others"
    )


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
