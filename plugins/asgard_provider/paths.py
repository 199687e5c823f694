"""Path containment: files a config names must stay inside their include/ folder."""

from __future__ import annotations

from pathlib import Path

from asgard_provider.exceptions import PathEscapeError


def contained(folder: Path, relative: str, where: str) -> Path:
    """Return ``folder/relative`` resolved; raise :class:`PathEscapeError` if it is absolute or leaves ``folder``.

    ``where`` names the folder in the message, e.g. ``include/sql/``.
    """
    root = Path(folder).resolve()
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(root):
        raise PathEscapeError(
            f"{relative!r} leaves {where} (absolute paths, '..' and symlinks out of it are refused); "
            f"give a path relative to {where}"
        )
    return path
