#!/bin/sh
# The lab's cluster, started by host-init.sh on the control-plane host: real helm and
# kubectl on PATH, the Kubernetes API emulator (lab.cluster) of Kubernetes KUBE_VERSION on
# ADDRESS:6443 with the deploy user's kubeconfig, a Helm chart repository on ADDRESS:8879 serving
# the real charts in CHARTS (packaged, *.tgz; lab/hosts.py puts them there), and the runner
# (lab.apps), the kubelet that runs the release's pods on this host.
#
# Usage: cluster-init.sh REPO ADDRESS KUBE_VERSION CHARTS NODE=IP...
set -eu
repo=$1 address=$2 kube_version=$3 charts=$4
shift 4
python="$repo/.venv/bin/python"
tools="$repo/.tools/bin"
state=/var/lib/labcluster

for tool in helm kubectl; do
	[ -x "$tools/$tool" ] || { echo "cluster-init: $tools/$tool missing: run scripts/install-k8s-tools" >&2; exit 1; }
	ln -sf "$tools/$tool" /usr/local/bin/$tool
done
mkdir -p "$state/charts"

nodes=""
for node in "$@"; do nodes="$nodes --node $node"; done
# shellcheck disable=SC2086 # one word per --node option
PYTHONPATH=$repo setsid "$python" -m lab.cluster serve --address "$address" --port 6443 \
	--kube-version "$kube_version" --kubeconfig "$state/kubeconfig" --state "$state/objects.json" \
	--announce-dev eth0 --pod-logs "$state/pod-logs" $nodes \
	</dev/null >>/var/log/labcluster.log 2>&1 &

PYTHONPATH=$repo "$python" -m lab.cluster chart-repo --charts "$charts" --out "$state/charts" \
	--url "http://$address:8879/" --helm "$tools/helm" >>/var/log/labcluster.log 2>&1
setsid "$python" -m http.server --bind "$address" --directory "$state/charts" 8879 \
	</dev/null >>/var/log/chart-repo.log 2>&1 &

# The emulator writes its kubeconfig once it listens; hand the deploy user a copy.
i=0
until [ -s "$state/kubeconfig" ]; do
	i=$((i + 1))
	[ "$i" -lt 200 ] || { echo "cluster-init: the API emulator did not start: see /var/log/labcluster.log" >&2; exit 1; }
	sleep 0.05
done
install -d -o deploy -g deploy -m 700 /home/deploy/.kube
install -o deploy -g deploy -m 600 "$state/kubeconfig" /home/deploy/.kube/config

# The pods of namespace binder whose images the lab knows (the chart's binder, hub and proxy, the
# user pods KubeSpawner creates), each in its own network namespace with its pod IP, with
# kube-proxy's rules for the Services on this host (see lab/apps/runner.py). Their volumes and
# tokens live on /run (tmpfs), their logs and the claims' data under /var/lib/labapps.
PYTHONPATH=$repo setsid "$python" -m lab.apps run --api "http://$address:6443" --namespace binder \
	--node-address "$address" --state-dir /var/lib/labapps --pod-logs "$state/pod-logs" \
	</dev/null >>/var/log/labapps.log 2>&1 &
