"""The files that ship with the package: the templates, the sample feed and the starter config.

In a wheel they are inside the package, under `newsletter/_bundled/` (pyproject.toml's
force-include copies the top-level `templates/`, `samples/` and `config.toml` there); in a
source checkout they are read where they are, at the top of the repository. Either way there
is one copy of each: the repository's own.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def bundled(*parts: str) -> Path:
    """A bundled file or folder: bundled("templates"), bundled("samples", "briefings.xml")."""
    packaged = files("newsletter").joinpath("_bundled", *parts)
    if packaged.is_file() or packaged.is_dir():
        # pip installs packages as plain folders, so the resource is a real path on disk.
        return Path(str(packaged))
    return _CHECKOUT.joinpath(*parts)


def templates_folder() -> Path:
    return bundled("templates")


def starter_config() -> str:
    """The commented config.toml that `newsletter init` writes: the repository's own."""
    return bundled("config.toml").read_text(encoding="utf-8")


def package_folder(name: str) -> Path:
    """A folder of the package itself (e.g. its migrations), through importlib.resources."""
    return Path(str(files("newsletter").joinpath(name)))
