#!/bin/sh
# Init of one lab host, run by tini (PID 1) inside the host's own network, mount,
# UTS and PID namespaces; lab/hosts.py starts it and has already made the
# network (eth0 with the host's address) and the host's directory.
#
# Usage: host-init.sh NAME ROLE RUNTIME HOST_DIR TEMPLATE_DIR CLIENT_PUBKEY [KUBE_VERSION CHARTS NODE=IP... | API_ADDRESS]
#   ROLE      "node" (runs its RUNTIME and the node agent, which talks to the control plane's
#             API at API_ADDRESS:6443), "control-plane" (a node that also runs the lab's
#             cluster, see cluster-init.sh: Kubernetes KUBE_VERSION, the charts in CHARTS,
#             every NODE=IP), "proxy" (runs nginx) or "registry" (runs docker-registry)
#   RUNTIME   a node's: "docker" (dockerd) or "containerd" (containerd alone); "-" elsewhere
#   HOST_DIR  the host's state: upper/ and work/ (overlays), root/, home/,
#             docker/ (/var/lib/docker), containerd/ (/var/lib/containerd), dind/ (/var/lib/dind),
#             pink/ (/var/lib/pink), sshd.log
# HOST_DIR, TEMPLATE_DIR and CLIENT_PUBKEY are outside the directories the host gets
# privately (lab.hosts.hosts_dir sees to it): an overlay's upper dir cannot be in its lower.
set -eu
name=$1 role=$2 runtime=$3 dir=$4 template=$5 pubkey=$6
shift 6
lab=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$lab")

# A checkout under a directory hosts get privately (/opt, /tmp, /root, ...) would
# vanish behind the private mounts: keep a handle on it in a private /mnt, and show
# it again at its own path at the end.
case $repo/ in
/etc/* | /var/* | /usr/* | /opt/* | /run/* | /tmp/* | /root/* | /home/*)
	mount -t tmpfs tmpfs /mnt
	mkdir /mnt/repo
	mount --bind "$repo" /mnt/repo
	private_repo=yes
	;;
*) private_repo=no ;;
esac

# Private files. /etc, /var, /usr and /opt are overlays: the template layer over
# the machine's directory, the host's writes in its own upper dir (the template
# hides /usr/local). /run, /tmp and /dev/shm are fresh; /root and /home are the
# host's own.
for d in etc var usr opt; do
	mount -t overlay overlay \
		-o "lowerdir=$template/$d:/$d,upperdir=$dir/upper/$d,workdir=$dir/work/$d" "/$d"
done
# Drop this namespace's copies of the lab's netns handles, so `ip netns del`
# in the root namespace really frees a removed host's network.
umount -l /run/netns 2>/dev/null || true
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount --bind "$dir/root" /root
mount --bind "$dir/home" /home
# dockerd's overlay2 and containerd's overlayfs snapshots cannot sit on overlayfs: give them
# plain directories (/var/lib/dind and /var/lib/pink: the charts' docker-in-docker and podman).
mkdir -p /var/lib/docker /var/lib/containerd /var/lib/dind /var/lib/pink
mount --bind "$dir/docker" /var/lib/docker
mount --bind "$dir/containerd" /var/lib/containerd
mount --bind "$dir/dind" /var/lib/dind
mount --bind "$dir/pink" /var/lib/pink
# The pods' logs, one directory every node shares (beside the template layer), where the
# control plane's `kubectl logs` reads what each node's pods wrote.
if [ "$role" = node ] || [ "$role" = control-plane ]; then
	mkdir -p /var/lib/labcluster/pod-logs
	mount --bind "$(dirname "$template")/pod-logs" /var/lib/labcluster/pod-logs
fi
mkdir -p /run/lock /run/sshd
if [ "$private_repo" = yes ]; then
	mkdir -p "$repo"
	mount --bind /mnt/repo "$repo"
	umount /mnt/repo
	umount /mnt
fi

hostname "$name"
echo "$name" >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
	"$name" >/etc/hosts

# First boot (no deploy user yet): users, keys, and the node's daemon.json.
if ! id deploy >/dev/null 2>&1; then
	# Password "*": no password login, yet not a locked account.
	useradd --create-home --shell /bin/bash --password '*' deploy
	install -d -m 700 /root/.ssh
	install -m 600 "$pubkey" /root/.ssh/authorized_keys
	install -d -m 700 -o deploy -g deploy /home/deploy/.ssh
	install -m 600 -o deploy -g deploy "$pubkey" /home/deploy/.ssh/authorized_keys
	# Only the host's own ed25519 key (see sshd_config.d/bhlab.conf) is served.
	rm -f /etc/ssh/ssh_host_rsa_key* /etc/ssh/ssh_host_ecdsa_key*
	if [ "$role" != proxy ]; then
		mkdir -p /etc/docker
		echo '{"log-driver": "json-file", "log-opts": {"max-size": "10m"}}' \
			>/etc/docker/daemon.json
	fi
fi

# A node's kubelet flags as kubeadm writes them (Kubernetes 1.24+: docker through cri-dockerd).
if [ "$runtime" != - ]; then
	case $runtime in
	containerd) endpoint=unix:///run/containerd/containerd.sock ;;
	*) endpoint=unix:///var/run/cri-dockerd.sock ;;
	esac
	mkdir -p /var/lib/kubelet
	echo "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=$endpoint --pod-infra-container-image=registry.k8s.io/pause:3.9\"" \
		>/var/lib/kubelet/kubeadm-flags.env
fi

# The node agent (lab/apps/nodeagent.py): hostPath checks on this node's files, and the pods it
# plays here (docker-in-docker, BinderHub's build pods).
node_agent() {
	PYTHONPATH=$repo setsid "$repo/.venv/bin/python" -m lab.apps.nodeagent --api "http://$1:6443" \
		--node "lab-$name" --pod-logs /var/lib/labcluster/pod-logs </dev/null >>/var/log/labnode.log 2>&1 &
}

/usr/sbin/sshd -E "$dir/sshd.log"
case $role in
node)
	service "$runtime" start
	node_agent "$1"
	;;
control-plane)
	service "$runtime" start
	address=$(ip -4 -o addr show eth0 | awk '{split($4, a, "/"); print a[1]}')
	sh "$lab/cluster-init.sh" "$(dirname "$lab")" "$address" "$@"
	node_agent "$address"
	;;
proxy) service nginx start ;;
registry) service docker-registry start ;;
esac

# Stay up as tini's child; tini reaps the daemons' orphans.
exec sleep infinity
