"""lab.apps: the BinderHub release's pods, run with the real software inside the lab.

`lab.cluster` stores objects and its kubelet only reports pods; lab.apps runs the pods whose
images the lab knows on the control-plane host, so that the deployed BinderHub answers as it
would on a cluster:

- `runner`: a small kubelet. It polls the API emulator for the namespace's pods and runs the
  containers of those whose images `images` knows (the chart's binder, hub and proxy, the user
  pods KubeSpawner creates) from their pod specs: volumes and env (`pods`), each container in its
  own mount namespace (`container`), each pod in its own network namespace with its pod IP, and
  kube-proxy's rules for the Services (`network`).
- `images`: which images the lab runs and how (the real BinderHub through `labbinder`,
  the chart's JupyterHub with KubeSpawner, configurable-http-proxy, Jupyter servers);
  `hubimage`: what the hub images ship that the lab's venv lacks.
- `labbinder`, `labbuild`: the real BinderHub with the lab's build, registry and providers;
  `labr2d`: the lab's repo2docker in BinderHub's build pods (a FROM scratch image built through the
  socket the pod mounts).
- `nodeagent`: what each node's kubelet does on the node itself: hostPath type checks, and the pods
  of the builder DaemonSets (a real dockerd for dind) and the build pods; `lifecycle`: the
  container restarts, back-off and status both it and `runner` report.
- `idp`: an OAuth2 identity provider, playing the site's IAM when the release turns
  authentication on (GenericOAuthenticator logs users in against it).

Command line: `python -m lab.apps run|idp` (see `__main__`).
"""

__version__ = "0.1.0"
