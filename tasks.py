"""Entry point for `invoke`: the task namespace lives in the fabfile package."""
from fabfile import ns  # noqa: F401
