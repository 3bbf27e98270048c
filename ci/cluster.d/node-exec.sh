#!/usr/bin/env bash
# Run a daemon of the real node (ci/cluster up --real-node) in its cgroup, after preparing the
# node's mount namespace when asked; then exec it, so that its pid is this script's.
#
#   node-exec.sh --cgroup NAME [--node-mounts NODE_STATE_DIR] [--resolv-conf FILE] -- COMMAND [ARGS...]
#
# --cgroup NAME: join the cgroup NAME (created if needed) in every cgroup v1 hierarchy, so that
#   `ci/cluster down` finds every process the daemon and its children start.
# --node-mounts DIR: the caller has just made a private mount namespace (unshare --mount
#   --propagation private); make it shared inside itself (the kubelet needs mount propagation
#   for its volumes), bind files holding the values the kubelet wants over the sysctls it would
#   otherwise write for the whole machine, and bind directories of DIR over the few fixed host
#   paths the kubelet and containerd write to. None of it is seen outside the namespace.
# --resolv-conf FILE: the caller has just made a private mount namespace; bind FILE over
#   /etc/resolv.conf in it (what `ip netns exec` does with /etc/netns/NAME/resolv.conf), so that
#   a process of the node (KEDA) resolves cluster names through the node's CoreDNS.
set -euo pipefail

cgroup="" node_state="" resolv_conf=""
while (($#)); do
  case $1 in
    --cgroup) cgroup=$2; shift 2 ;;
    --node-mounts) node_state=$2; shift 2 ;;
    --resolv-conf) resolv_conf=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "node-exec: unknown option $1" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "node-exec: no command" >&2; exit 2; }

if [[ -n $cgroup ]]; then
  for hierarchy in /sys/fs/cgroup/*/; do
    hierarchy=${hierarchy%/}
    [[ -f $hierarchy/cgroup.procs && $hierarchy != */unified ]] || continue
    mkdir -p "$hierarchy/$cgroup"
    # cpuset cgroups start with no CPUs or memory nodes: inherit the parent's.
    if [[ -f $hierarchy/$cgroup/cpuset.cpus ]]; then
      dir=$hierarchy
      for part in ${cgroup//\// }; do
        dir=$dir/$part
        [[ -n $(<"$dir/cpuset.cpus") ]] || cat "${dir%/*}/cpuset.cpus" >"$dir/cpuset.cpus"
        [[ -n $(<"$dir/cpuset.mems") ]] || cat "${dir%/*}/cpuset.mems" >"$dir/cpuset.mems"
      done
    fi
    echo $$ >"$hierarchy/$cgroup/cgroup.procs"
  done
fi

if [[ -n $node_state ]]; then
  mount --make-rshared /
  # The values the kubelet sets when protectKernelDefaults is false (pkg/kubelet/cm).
  mkdir -p "$node_state/sysctl"
  for setting in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
    kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    name=${setting%%=*}
    file=$node_state/sysctl/${name//\//.}
    echo "${setting#*=}" >"$file"
    mount --bind "$file" "/proc/sys/$name"
  done
  # Fixed paths: /var/log/containers (the kubelet's log symlinks) and /var/lib/cni (the CNI
  # library's cache). A mount point missing on the host is created and noted, and `down`
  # removes it again.
  for pair in container-logs:/var/log/containers cni/lib:/var/lib/cni; do
    source=$node_state/${pair%%:*} target=${pair#*:}
    mkdir -p "$source"
    if [[ ! -d $target ]]; then
      mkdir -p "$target"
      echo "$target" >>"$node_state/created-mount-points"
    fi
    mount --bind "$source" "$target"
  done
fi

if [[ -n $resolv_conf ]]; then
  mount --bind "$resolv_conf" /etc/resolv.conf
fi

exec "$@"
