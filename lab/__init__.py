"""The lab wing: local hosts made from Linux namespaces (`hosts`, `tasks`: `invoke lab.up`), the
Kubernetes API emulator their control plane runs (`cluster`), the release's workloads played for
real (`apps`), and the shell, charts, manifests and template layer they use. The product
(`fabfile`) never imports it; `tasks.py` adds its tasks in a checkout (docs/lab.md).
"""
