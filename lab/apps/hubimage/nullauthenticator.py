"""`nullauthenticator.NullAuthenticator`, which the hub images ship (jupyterhub-nullauthenticator)
and the BinderHub charts name when nobody logs in: the lab's venv lacks that package, and
JupyterHub has carried the same class since 5.0 (jupyterhub.auth.NullAuthenticator). On the
PYTHONPATH of the hub images' containers only (lab.apps.images)."""
from jupyterhub.auth import NullAuthenticator

__all__ = ["NullAuthenticator"]
