"""binderhub-ops: the BinderHub-on-bare-metal runbook as Invoke tasks run over SSH."""
from invoke import Collection

from . import cluster, deploy, diagnose, docker, helm, metallb, nginx, rollback, secrets, settings, smoke, status

ns = Collection()
ns.configure(settings.DEFAULTS)
ns.add_task(deploy.deploy)
ns.add_task(smoke.smoke)
for root_task in (status.status, diagnose.diagnose, rollback.rollback):
    ns.add_task(root_task)
for module in (cluster, docker, helm, metallb, nginx, secrets):
    ns.add_collection(Collection.from_module(module), name=module.__name__.rsplit(".", 1)[1])
