# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The only module_utils code that touches disk: JSON state and secret files, written atomically."""

from __future__ import annotations

import json
import os
import tempfile


class StateFileError(ValueError):
    """A state file exists but cannot be read as what it should be."""


def load_json(path: str) -> dict | None:
    """The JSON object in path, or None when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path}: cannot be read as JSON ({exc}); move it away only if you know "
                             "the keys beside it are not in use") from exc
    if not isinstance(data, dict):
        raise StateFileError(f"{path}: holds {type(data).__name__}, not a JSON object")
    return data


def write_atomic(path: str, content: bytes, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Write, fsync, set owner and mode, rename over path, fsync the directory: a crash leaves the old
    file or the new one, never a mix, and the content is never readable by others, not even briefly."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_json(path: str, data: dict, mode: int = 0o600, uid: int = -1, gid: int = -1) -> None:
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode, uid, gid)
