# shellcheck shell=bash
# The real node of `ci/cluster up --real-node`, sourced by ci/cluster (which defines log, die, now,
# need, quiet, start, pid_of, wait_until, kc, issue_cert, write_kubeconfig and the paths).
#
# One real node beside kwok's fake ones, built from Debian packages and the Go module proxy:
#
#   host network namespace            node network namespace "cs-workers-node" (+ its own mounts)
#   ---------------------------       ---------------------------------------------------------
#   kube-apiserver 127.0.0.1:API      containerd (CRI; runc; CNI bridge, pods in POD_CIDR)
#   api-proxy  HOST_ADDR:API  ------> kubelet    NODE_ADDR:10250 (node "cs-real-node")
#   registry   HOST_ADDR:REGISTRY <-- kube-proxy (iptables, in this namespace only)
#   dockerd    (builds, --network host) coredns  NODE_ADDR:53 (the pods' cluster DNS)
#
# A veth pair joins the two namespaces (HOST_ADDR <-> NODE_ADDR). Pods reach the host through it
# (the CNI bridge masquerades them behind NODE_ADDR), so the machine needs no forwarding, no
# route and no firewall rule of ours; every iptables rule and sysctl kube-proxy and the CNI
# plugins write lands in the node's namespace. The kubelet's own sysctl writes go to files bound
# over /proc/sys inside the node's mount namespace. Everything the node runs is in the cgroup
# subtree NODE_CGROUP (dockerd and its builds in DOCKER_CGROUP), so `down` finds every process.
#
# Addresses and ports (environment, defaults):
#   CS_NODE_LINK_PREFIX  10.213.0   HOST_ADDR .1 and NODE_ADDR .2 of a /30
#   CS_NODE_POD_CIDR     10.213.1.0/24
#   registry             HOST_ADDR : CS_CLUSTER_PORT_BASE + 6 (default 16446)

REGISTRY_VERSION=${CS_CLUSTER_REGISTRY_VERSION:-v3.1.2}
COREDNS_VERSION=${CS_CLUSTER_COREDNS_VERSION:-v1.14.7}
LOCAL_PATH_VERSION=${CS_CLUSTER_LOCAL_PATH_VERSION:-v0.0.30}
REGISTRY_BIN=$CACHE/bin/registry-$REGISTRY_VERSION
COREDNS_BIN=$CACHE/bin/coredns-$COREDNS_VERSION
LOCAL_PATH_BIN=$CACHE/bin/local-path-provisioner-$LOCAL_PATH_VERSION
PAUSE_BIN=$CACHE/bin/pause-1
# The tag containerd asks for as its sandbox image (registry.k8s.io is mirrored to ours).
PAUSE_IMAGE_TAG=3.10

NODE_NAME=cs-real-node
NODE_NETNS=cs-workers-node
NODE_VETH_HOST=cs-node0
LINK_PREFIX=${CS_NODE_LINK_PREFIX:-10.213.0}
HOST_ADDR=$LINK_PREFIX.1
NODE_ADDR=$LINK_PREFIX.2
POD_CIDR=${CS_NODE_POD_CIDR:-10.213.1.0/24}
NODE_LABEL=cs-workers.dev/real-node
NODE_CGROUP=cs-workers-node
DOCKER_CGROUP=cs-workers-docker
NODE_STATE=$STATE/node
# Sockets live under /run: containerd's shim socket paths must stay short (108 bytes).
NODE_RUN=/run/cs-workers-node
DOCKER_DATA=$CACHE/docker
REGISTRY_DATA=$CACHE/registry
# Started in this order after the control plane; stopped in reverse before it.
NODE_COMPONENTS=(api-proxy registry dockerd containerd kubelet kube-proxy coredns local-path-provisioner)
# What `up --real-node` needs from Debian (package: command).
NODE_PACKAGES=(containerd:containerd runc:runc containernetworking-plugins:/usr/lib/cni/bridge
  docker.io:dockerd iptables:iptables conntrack:conntrack socat:socat debootstrap:debootstrap
  iproute2:ip util-linux:nsenter)

registry_address() { echo "$HOST_ADDR:$REGISTRY_PORT"; }

node_bin_of() {
  case $1 in
    api-proxy) command -v socat ;;
    registry) echo "$REGISTRY_BIN/registry" ;;
    dockerd) command -v dockerd ;;
    containerd) command -v containerd ;;
    coredns) echo "$COREDNS_BIN/coredns" ;;
    local-path-provisioner) echo "$LOCAL_PATH_BIN/local-path-provisioner" ;;
    kubelet | kube-proxy) echo "$K8S_BIN/$1" ;;
    keda-*) keda_bin_of "$1" ;;
    *) return 1 ;;
  esac
}

has_real_node() { [[ -f $STATE/real-node ]]; }

# ---------------------------------------------------------------------------
# Packages and binaries
# ---------------------------------------------------------------------------

node_packages() {
  local entry missing=() sudo=""
  for entry in "${NODE_PACKAGES[@]}"; do
    command -v "${entry#*:}" >/dev/null 2>&1 || [[ -x ${entry#*:} ]] || missing+=("${entry%%:*}")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing from apt: ${missing[*]}"
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
  # The packages' own services must not run: the node starts its daemons itself.
  for entry in docker containerd; do $sudo service "$entry" stop >/dev/null 2>&1 || true; done
}

# The build_* functions run under ci/cluster's build_into, which sets $tmp, the output directory.
# shellcheck disable=SC2154
build_registry() {
  log "building the CNCF distribution registry $REGISTRY_VERSION"
  GOBIN=$tmp quiet go install -ldflags "-s -w" \
    "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
}

build_coredns() {
  log "building CoreDNS $COREDNS_VERSION"
  GOBIN=$tmp quiet go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_local_path() {
  log "building the local-path provisioner $LOCAL_PATH_VERSION"
  GOBIN=$tmp quiet go install -ldflags "-s -w" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
}

build_pause() {
  log "building the pause program"
  local work=$CACHE/build/pause
  rm -rf "$work" && mkdir -p "$work" && cp "$DATA/pause/pause.go" "$work/"
  printf 'module cs-workers.local/pause\n\ngo 1.22\n' >"$work/go.mod"
  (cd "$work" && quiet go build -ldflags "-s -w" -o "$tmp/pause" .)
}

node_build() {
  (
    go_env
    export GOCACHE=$CACHE/build/gocache-node
    build_into "$REGISTRY_BIN" build_registry
    build_into "$COREDNS_BIN" build_coredns
    build_into "$LOCAL_PATH_BIN" build_local_path
    build_into "$PAUSE_BIN" build_pause
    rm -rf "$GOCACHE"
  )
}

# ---------------------------------------------------------------------------
# Checks: can this machine run a node at all?
# ---------------------------------------------------------------------------

node_preflight() {
  [[ $(uname -s) == Linux ]] || die "--real-node needs Linux"
  [[ $(id -u) == 0 ]] || die "--real-node needs root (namespaces, cgroups, mounts); run it with sudo"
  [[ -w /sys/fs/cgroup/pids ]] || die "--real-node needs writable cgroups (/sys/fs/cgroup/pids is not)"
  grep -qw overlay /proc/filesystems || die "--real-node needs overlayfs"
}

# ---------------------------------------------------------------------------
# Network: the node's namespace and the veth pair
# ---------------------------------------------------------------------------

node_net_up() {
  ip netns add "$NODE_NETNS"
  ip link add "$NODE_VETH_HOST" type veth peer name eth0 netns "$NODE_NETNS"
  ip addr add "$HOST_ADDR/30" dev "$NODE_VETH_HOST"
  ip link set "$NODE_VETH_HOST" up
  ip -n "$NODE_NETNS" addr add "$NODE_ADDR/30" dev eth0
  ip -n "$NODE_NETNS" link set lo up
  ip -n "$NODE_NETNS" link set eth0 up
  ip -n "$NODE_NETNS" route add default via "$HOST_ADDR"
}

node_net_down() {
  ip netns del "$NODE_NETNS" 2>/dev/null || true
  ip link del "$NODE_VETH_HOST" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# cgroups
# ---------------------------------------------------------------------------

# Every mounted cgroup hierarchy (v1 controllers, the named systemd one, and the v2 `unified`
# one the kubelet and runc also write to on this hybrid layout).
cgroup_hierarchies() {
  local d
  for d in /sys/fs/cgroup/*/; do
    d=${d%/}
    [[ -f $d/cgroup.procs ]] && echo "$d"
  done
  return 0
}

# cgroup_kill NAME: SIGKILL every process in the cgroup subtree NAME until none is left.
cgroup_kill() {
  local name=$1 root=/sys/fs/cgroup/pids/$1 pids deadline
  [[ -d $root ]] || return 0
  deadline=$(($(now) + 30))
  while pids=$(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null) && [[ -n $pids ]]; do
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    (($(now) < deadline)) || { log "processes left in cgroup $name: ${pids//$'\n'/ }"; return 1; }
    sleep 0.2
  done
}

# cgroup_remove NAME: remove the subtree NAME from every hierarchy, deepest first.
cgroup_remove() {
  local h
  while read -r h; do
    [[ -d $h/$1 ]] || continue
    find "$h/$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d $h/$1 ]] || log "could not remove cgroup $h/$1"
  done < <(cgroup_hierarchies)
}

# ---------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------

node_write_config() {
  local p=$STATE/pki n=$NODE_STATE reg
  reg=$(registry_address)
  mkdir -p "$n"/{kubelet,containerd,cni/net.d,cni/lib,netns,pod-logs,container-logs,sysctl,certs.d} \
    "$n/certs.d/$reg" "$n/certs.d/docker.io" "$n/certs.d/registry.k8s.io"

  issue_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth -
  issue_cert kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_ADDR,DNS:$NODE_NAME"
  issue_cert kube-proxy "/CN=system:kube-proxy" clientAuth -
  issue_cert coredns "/CN=cs-workers:coredns" clientAuth -
  # Node components reach the API server through api-proxy on the veth; the server's
  # certificate names localhost, so they check it under that name.
  local c
  for c in kubelet kube-proxy coredns; do
    write_kubeconfig "$n/$c.kubeconfig" "$c" "https://$HOST_ADDR:$API_PORT" localhost
  done

  # containerd: CRI with runc (cgroupfs, as cgroup v1 needs here) and the CNI bridge. Images come
  # from the local registry, which also serves as Docker Hub's and registry.k8s.io's mirror, so
  # the chart's default images (redis) and the sandbox image resolve there.
  cat >"$n/containerd/config.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$NODE_RUN/containerd"
[grpc]
  address = "$NODE_RUN/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:$PAUSE_IMAGE_TAG"
  # Without CAP_SYS_RESOURCE nothing may lower oom_score_adj (../shared/REAL-NODE.md).
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$n/certs.d"
EOF
  local mirror
  printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$reg" "$reg" >"$n/certs.d/$reg/hosts.toml"
  for mirror in docker.io:https://registry-1.docker.io registry.k8s.io:https://registry.k8s.io; do
    printf 'server = "%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
      "${mirror#*:}" "$reg" >"$n/certs.d/${mirror%%:*}/hosts.toml"
  done

  # The pod network: one bridge, addresses from POD_CIDR, traffic leaving it masqueraded behind
  # the node's address (so the host answers pods without a route back to POD_CIDR).
  cat >"$n/cni/net.d/10-cs-workers.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cs-workers",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$n/cni/lib/networks",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  # Pods resolve cluster names through CoreDNS on the node's address; there is no upstream
  # resolver (nothing outside the machine is reachable from pods anyway).
  printf 'nameserver %s\noptions ndots:5\n' "$NODE_ADDR" >"$n/resolv.conf"

  cat >"$n/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_ADDR
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $p/kubelet-serving.crt
tlsPrivateKeyFile: $p/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$NODE_RUN/containerd.sock
# cgroup v1, no systemd here; the node's pods live under one subtree that down removes.
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE: the kubelet may not lower its own oom_score_adj.
oomScoreAdj: 0
# The kubelet's iptables chains would go into the node's namespace anyway; kube-proxy makes
# the ones Services need.
makeIPTablesUtilChains: false
protectKernelDefaults: false
clusterDNS: [$NODE_ADDR]
clusterDomain: cluster.local
resolvConf: $n/resolv.conf
podLogsDir: $n/pod-logs
registerNode: true
registerWithTaints:
  - {key: $NODE_LABEL, value: "true", effect: NoSchedule}
serializeImagePulls: false
# Pods on a test node are deleted at once when asked; graceful shutdown of the node is ours.
shutdownGracePeriod: 0s
# The machine's disk is shared with much else: do not evict on its fill level.
evictionHard: {memory.available: 100Mi}
imageGCHighThresholdPercent: 100
EOF

  cat >"$n/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $n/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_ADDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# The conntrack table size and timeouts are machine-wide sysctls: leave them as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF

  cat >"$n/Corefile" <<EOF
.:53 {
    bind $NODE_ADDR
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $n/coredns.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF

  # Volume directories the local-path provisioner makes on the node: mode 0777, so the pods'
  # non-root uid can write (fsGroup does not apply to hostPath volumes).
  mkdir -p "$n/local-path" "$n/volumes"
  printf '{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["%s"]}]}\n' \
    "$n/volumes" >"$n/local-path/config.json"
  # shellcheck disable=SC2016 # $VOL_DIR is the helper pod's, expanded there
  printf '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n' >"$n/local-path/setup"
  # shellcheck disable=SC2016
  printf '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n' >"$n/local-path/teardown"
  cat >"$n/local-path/helperPod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: helper-pod
spec:
  tolerations:
    - {key: $NODE_LABEL, operator: Exists, effect: NoSchedule}
  # The image's user is the chart's uid; making directories on the node takes root.
  securityContext: {runAsUser: 0}
  containers:
    - name: helper-pod
      image: $(local_path_helper_image)
      imagePullPolicy: IfNotPresent
EOF

  cat >"$n/registry.yaml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_DATA
  delete:
    enabled: true
http:
  addr: $reg
EOF
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# start_in_node NAME ARGS...: start NAME inside the node's network and mount namespaces and its
# cgroup. The first one (containerd) makes the mount namespace; the others join it.
start_in_node() {
  local name=$1 bin pid
  shift
  bin=$(node_bin_of "$name")
  if [[ $name == containerd ]]; then
    start_with "$name" "$bin" nsenter --net="/run/netns/$NODE_NETNS" -- \
      unshare --mount --propagation private -- \
      bash "$DATA/node-exec.sh" --cgroup "$NODE_CGROUP/system" --node-mounts "$NODE_STATE" -- "$bin" "$@"
  else
    pid=$(pid_of containerd) || die "containerd is not running"
    start_with "$name" "$bin" nsenter --target "$pid" --mount --net -- \
      bash "$DATA/node-exec.sh" --cgroup "$NODE_CGROUP/system" -- "$bin" "$@"
  fi
}

node_start() {
  local n=$NODE_STATE reg
  reg=$(registry_address)
  mkdir -p "$NODE_RUN" "$DOCKER_DATA" "$REGISTRY_DATA" "$STATE/docker"

  start_with api-proxy "$(node_bin_of api-proxy)" \
    socat "TCP-LISTEN:$API_PORT,bind=$HOST_ADDR,reuseaddr,fork" "TCP:127.0.0.1:$API_PORT"
  start_with registry "$REGISTRY_BIN/registry" "$REGISTRY_BIN/registry" serve "$n/registry.yaml"
  # dockerd builds the images (`cs-cluster build`): in the machine's network (builds fetch from
  # PyPI with --network host), in a mount namespace of its own, changing no firewall or sysctl.
  start_with dockerd "$(node_bin_of dockerd)" unshare --mount --propagation private -- \
    bash "$DATA/node-exec.sh" --cgroup "$DOCKER_CGROUP/system" -- "$(node_bin_of dockerd)" \
    --host "unix://$STATE/docker/docker.sock" --data-root "$DOCKER_DATA" --exec-root "$NODE_RUN/docker" \
    --pidfile "$STATE/docker/docker.pid" --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
    --storage-driver overlay2 --cgroup-parent "/$DOCKER_CGROUP/builds" --insecure-registry "$reg" \
    --default-ulimit nofile=20000:20000
  wait_until registry "the registry on $reg" curl -fsS --max-time 2 "http://$reg/v2/"
  wait_until dockerd "dockerd on $STATE/docker/docker.sock" \
    env DOCKER_HOST="unix://$STATE/docker/docker.sock" docker version

  start_in_node containerd --config "$n/containerd/config.toml" --log-level warn
  wait_until containerd "containerd's CRI" nsenter --net="/run/netns/$NODE_NETNS" \
    ctr --address "$NODE_RUN/containerd.sock" version

  node_push_pause

  start_in_node kubelet --config "$n/kubelet/config.yaml" --kubeconfig "$n/kubelet.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_ADDR" --root-dir "$n/kubelet/root" \
    --cert-dir "$n/kubelet/pki" --node-labels "$NODE_LABEL=true" --v=1
  start_in_node kube-proxy --config "$n/kube-proxy.yaml" --v=1
  start_in_node coredns -conf "$n/Corefile"
  wait_until kubelet "node $NODE_NAME Ready" kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  wait_until coredns "CoreDNS ready" nsenter --net="/run/netns/$NODE_NETNS" \
    curl -fsS --max-time 2 http://127.0.0.1:8181/ready
  # Volumes for pods on the real node: the provisioner kind itself uses, run as a process.
  start_with local-path-provisioner "$LOCAL_PATH_BIN/local-path-provisioner" \
    "$LOCAL_PATH_BIN/local-path-provisioner" start --kubeconfig "$KUBECONFIG_FILE" \
    --config "$n/local-path/config.json" --helper-pod-file "$n/local-path/helperPod.yaml" \
    --namespace local-path-storage --helper-image "$(local_path_helper_image)" \
    --service-account-name local-path-provisioner
}

# The local-path provisioner's helper pods (mkdir and rm on the node) run this image: the pause
# image has no shell, so the smallest image here with one, the Redis stand-in, under the name
# the chart pulls it by.
local_path_helper_image() {
  local tag
  tag=$(sed -n '/^redis:/,/^[a-z]/s/^    tag: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$HERE/../charts/cs-workers/values.yaml")
  echo "redis:${tag%%$'\n'*}"
}

# The sandbox image, from the pause program built here, pushed once to the local registry.
node_push_pause() {
  local image
  image=$(registry_address)/pause:$PAUSE_IMAGE_TAG
  curl -fs --max-time 5 -o /dev/null "http://$(registry_address)/v2/pause/manifests/$PAUSE_IMAGE_TAG" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' && return 0
  log "pushing the pause image as $image"
  local ctx
  ctx=$(mktemp -d)
  cp "$PAUSE_BIN/pause" "$DATA/pause/Dockerfile" "$ctx/"
  (
    export DOCKER_HOST="unix://$STATE/docker/docker.sock" DOCKER_BUILDKIT=0
    quiet docker build --tag "$image" "$ctx"
    quiet docker push "$image"
  )
  rm -rf "$ctx"
}

# The cluster objects the node's components need: CoreDNS reads Services and EndpointSlices,
# the local-path provisioner its ConfigMap and a ServiceAccount for its helper pods, and its
# StorageClass `local-path` (ci/real-node-values.yaml selects it for Redis's volume).
node_apply_objects() {
  kc apply -f "$DATA/real-node.yaml" >&2
  kc -n local-path-storage create configmap local-path-config --from-file="$NODE_STATE/local-path" \
    --dry-run=client -o yaml | kc apply -f - >&2
}

# node_up: add the real node to the running control plane.
node_up() {
  local start d
  start=$(now)
  node_packages
  node_build
  need ip nsenter unshare socat containerd runc dockerd docker ctr iptables
  # A node half made by an `up` that was killed: clear it first.
  ! ip netns list | grep -qw "$NODE_NETNS" || node_cleanup
  touch "$STATE/real-node"
  COMPONENTS+=("${NODE_COMPONENTS[@]}")
  mkdir -p "$NODE_STATE"
  node_net_up
  node_write_config
  node_apply_objects
  node_start
  # The images the chart runs by default and our Dockerfiles build from, built here from
  # Debian packages (no registry is reachable): a stand-in base and Redis.
  if [[ -f $DATA/standin-images.sh ]]; then
    d=$(DOCKER_HOST="unix://$STATE/docker/docker.sock" DOCKER_BUILDKIT=0 CS_REGISTRY=$(registry_address) \
      bash "$DATA/standin-images.sh") || die "building the stand-in images failed"
    eval "$d"
    echo "${CS_BASE_IMAGE:-}" >"$STATE/base-image"
  fi
  log "real node $NODE_NAME Ready in $(($(now) - start))s (registry $(registry_address), host $HOST_ADDR)"
}

# node_cleanup: what the node's processes leave behind once stopped: containers and their
# shims (they outlive containerd), build containers, cgroups, the namespaces and veth, and the
# mount points made on the host.
node_cleanup() {
  local d
  cgroup_kill "$NODE_CGROUP" || true
  cgroup_kill "$DOCKER_CGROUP" || true
  cgroup_remove "$NODE_CGROUP"
  cgroup_remove "$DOCKER_CGROUP"
  node_net_down
  if [[ -f $NODE_STATE/created-mount-points ]]; then
    while read -r d; do rmdir "$d" 2>/dev/null || log "left $d (not empty)"; done <"$NODE_STATE/created-mount-points"
  fi
  rm -rf "$NODE_RUN"
  rm -f "$STATE/real-node"
}

node_print_export() {
  printf 'export DOCKER_HOST=%q\n' "unix://$STATE/docker/docker.sock"
  printf 'export DOCKER_BUILDKIT=0\n'
  printf 'export CS_REGISTRY=%q\n' "$(registry_address)"
  printf 'export CS_HOST_ADDRESS=%q\n' "$HOST_ADDR"
  if [[ -s $STATE/base-image ]]; then printf 'export CS_BASE_IMAGE=%q\n' "$(<"$STATE/base-image")"; fi
}

# A running cluster with a real node: its components are part of the cluster's.
if has_real_node; then COMPONENTS+=("${NODE_COMPONENTS[@]}"); fi
