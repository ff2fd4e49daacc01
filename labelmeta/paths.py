"""Where a user's file is: as given, else under ``data_root`` (the one rule of every file option)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def find_file(path: str, data_root: Optional[str], what: str) -> Path:
    """``path`` as given if it exists, else under ``data_root`` when it is relative; ``FileNotFoundError``
    naming ``what`` (e.g. ``"noise file"``), the path and where else it was looked for."""
    given = Path(path).expanduser()
    if given.exists():
        return given
    under = Path(data_root).expanduser() / given if data_root and not given.is_absolute() else None
    if under is not None and under.exists():
        return under
    tried = f" (nor {str(under)!r} under data_root)" if under is not None else ""
    raise FileNotFoundError(f"{what} {path!r} does not exist{tried}")
