"""Jinja2 rendering of templates/: undefined names are errors, trailing newlines kept."""
from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True, autoescape=False)


def render(name: str, **context) -> str:
    """Render templates/NAME with `context`."""
    return environment.get_template(name).render(context)
