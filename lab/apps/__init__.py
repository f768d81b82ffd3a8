"""lab.apps: the BinderHub release's workloads, run for real inside the lab.

`lab.cluster` only stores objects; nothing runs the chart's pods. lab.apps plays them on the
control-plane host, so that the deployed BinderHub answers as it would on a cluster:

- `runner`: a small kubelet. It polls the API emulator for the release and runs, as its own
  child processes, the binder API (Deployment `binder`, on the `binder` Service's nodePort) and
  JupyterHub (Deployments `hub` + `proxy`, public proxy on `proxy-public`'s load-balancer IP),
  each from its container's environment and mounted files (`pods`), as the real chart made them.
- `binder`: BinderHub's HTTP API (`versions`, `health`, the `/build` event stream). No image is
  built (repo2docker does not run here): the build is a short, repo2docker-like log, and the
  launch goes to the real JupyterHub through its REST API, as BinderHub's launcher does.
- `hub`, `jupyterhub_config`, `spawner`: a real JupyterHub configured from the release like
  BinderHub's chart configures it, spawning real local Jupyter servers.
- `faults`: failures the lab can be asked to produce, to test clients.
- `idp`: an OAuth2 identity provider, playing the site's IAM when the release turns
  authentication on (GenericOAuthenticator logs users in against it).

Command line: `python -m lab.apps run|binder|fault|idp` (see `__main__`).
"""

__version__ = "0.1.0"
