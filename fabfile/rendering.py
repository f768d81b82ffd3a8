"""Jinja2 rendering of the package's templates: undefined names are errors, trailing newlines kept."""
from __future__ import annotations

from importlib import resources

import jinja2

TEMPLATES = resources.files(__package__) / "templates"
environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True, autoescape=False)


def render(name: str, **context) -> str:
    """Render the template NAME (fabfile/templates/NAME) with `context`."""
    return environment.get_template(name).render(context)
