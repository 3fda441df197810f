"""Making file-system changes durable before anything relies on them."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: str | os.PathLike[str] | Path) -> None:
    """Flush a folder's entries, so that a rename or link in it survives a
    crash. Filesystems that cannot do this are skipped silently."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
