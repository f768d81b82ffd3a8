"""Entry point for `invoke` in a checkout: the product's tasks (fabfile) and the lab's (`lab.*`)."""
from fabfile import ns
from lab.tasks import ns as lab

ns.add_collection(lab)
