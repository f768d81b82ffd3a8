"""lab.cluster: a Kubernetes API emulator that real kubectl and helm work against, for the lab.

It is an emulator, not a cluster: no container runs, there is no RBAC, TLS or authentication.
What the lab relies on behaves as the real components document it: the API (`api`, `cluster`,
`store`), Service IP and NodePort allocation (`services`), Deployments, DaemonSets and their Pods
becoming ready (`workloads`), cordoning and draining nodes (`nodes`), namespaces, garbage
collection and CRDs (`controllers`), MetalLB 0.9 and 0.13+ assigning LoadBalancer IPs and
announcing them from the host (`metallb`, `announce`), and pods' logs read from files that
whatever plays their containers writes (`api`, `--pod-logs`). `chartrepo` builds a Helm chart
repository for the stand-in chart in lab/charts. Run it with `python -m lab.cluster serve`.
"""
from lab.cluster.api import LabCluster
from lab.cluster.metallb import MetalLBController
from lab.cluster.services import LoadBalancerController

__all__ = ["LabCluster", "LoadBalancerController", "MetalLBController"]
