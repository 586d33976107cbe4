"""Where templates and static files live.

In a source checkout they sit at the project root beside ``app/``; in an installed wheel hatch
copies them into the package (``app/templates``, ``app/static``). Looking inside the package first
makes both layouts work without configuration.
"""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(name: str) -> Path:
    inside = _PACKAGE_DIR / name
    return inside if inside.is_dir() else _PACKAGE_DIR.parent / name


TEMPLATES_DIR = _resource_dir("templates")
STATIC_DIR = _resource_dir("static")
