"""lab.cluster: a Kubernetes API emulator that real kubectl and helm work against, for the lab.

It is an emulator, not a cluster: no container runs, there is no RBAC, TLS or authentication.
What the lab relies on behaves as the real components document it: the API of the Kubernetes
version chosen at start, 1.24 or 1.32, with exactly that version's built-in group-versions
(`apis`, `discovery`), its writes (`api`, `cluster`, `store`), Service IP and NodePort
allocation (`services`), Deployments, DaemonSets, StatefulSets and their Pods becoming ready
(`workloads`, `statefulsets`), claims bound by a provisioner of the default StorageClass
(`volumes`), PodDisruptionBudgets' status (`disruption`), cordoning and draining nodes
(`nodes`), namespaces, Secrets' stringData, garbage collection and CRDs (`controllers`),
MetalLB 0.9 and 0.13+ assigning LoadBalancer IPs and announcing them from the host (`metallb`,
`announce`), and pods' logs read from files that whatever plays their containers writes (`api`,
`--pod-logs`). `chartrepo` builds a Helm chart repository of the real charts. Run it with
`python -m lab.cluster serve [--kube-version 1.24|1.32]`.
"""
from lab.cluster.api import LabCluster
from lab.cluster.metallb import MetalLBController
from lab.cluster.services import LoadBalancerController

__all__ = ["LabCluster", "LoadBalancerController", "MetalLBController"]
