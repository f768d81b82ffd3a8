"""binderhub-ops: the BinderHub-on-bare-metal runbook as Invoke tasks run over SSH."""
from invoke import Collection

from . import cluster, deploy, docker, helm, lab, metallb, nginx, recovery, secrets, smoke

ns = Collection()
ns.add_task(deploy.deploy)
ns.add_task(smoke.smoke)
for root_task in (recovery.status_task, recovery.diagnose_task, recovery.rollback_task):
    ns.add_task(root_task)
for module in (cluster, docker, helm, lab, metallb, nginx, secrets):
    ns.add_collection(Collection.from_module(module), name=module.__name__.rsplit(".", 1)[1])
