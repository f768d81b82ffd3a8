"""binderhub-ops: the BinderHub-on-bare-metal runbook as Invoke tasks run over SSH."""
from invoke import Collection

from . import deploy, docker, lab

ns = Collection()
ns.add_task(deploy.deploy)
ns.add_collection(Collection.from_module(docker), name="docker")
ns.add_collection(Collection.from_module(lab), name="lab")
