# shellcheck shell=bash
# KEDA (keda.sh) on the cluster of `ci/cluster up --real-node --keda`, sourced by ci/cluster after
# real-node.bash (it uses log, die, now, quiet, build_into, start_with, pid_of, wait_until, kc,
# issue_cert, write_kubeconfig and the real node's names).
#
# KEDA's operator and its metrics API server are built from the Go module proxy (pinned, cached in
# $CACHE/bin/keda-VERSION with the CRDs and RBAC of the same module) and run as processes, not
# pods (no registry serves KEDA's images here), in the real node's network namespace: there the
# gateway's ClusterIP routes through kube-proxy, and cluster names resolve through CoreDNS (a
# private mount namespace binds a resolv.conf pointing at it over /etc/resolv.conf).
#
#   host network namespace              node network namespace
#   kube-apiserver (aggregator) ------> keda-metrics-apiserver NODE_ADDR:6443 (external.metrics.k8s.io)
#   kube-controller-manager (HPA)          |  gRPC, mTLS
#                                       keda-operator 127.0.0.1:9666 ---> gateway Services (ClusterIP)
#
# The aggregator reaches the metrics API server through the APIService v1beta1.external.metrics.k8s.io,
# a Service without selector and an EndpointSlice on NODE_ADDR (--enable-aggregator-routing).
# Both processes authenticate as the ServiceAccount keda:keda-operator (a client certificate of
# that name), so they get exactly the RBAC of KEDA's own manifests.

KEDA_VERSION=${CS_CLUSTER_KEDA_VERSION:-v2.21.0}
KEDA_MODULE=github.com/kedacore/keda/v2
KEDA_BIN=$CACHE/bin/keda-$KEDA_VERSION
KEDA_STATE=$STATE/keda
KEDA_NAMESPACE=keda
# Started in this order after the real node; stopped in reverse before it.
KEDA_COMPONENTS=(keda-operator keda-metrics-apiserver)
# Ports in the node's network namespace (CoreDNS holds 127.0.0.1:8080 and :8181 there).
KEDA_GRPC_ADDRESS=127.0.0.1:9666
KEDA_OPERATOR_HEALTH_ADDRESS=127.0.0.1:9081
KEDA_METRICS_SERVER_PORT=6443
KEDA_METRICS_SERVER_METRICS_PORT=9082
KEDA_APISERVICE=v1beta1.external.metrics.k8s.io

keda_bin_of() {
  case $1 in
    keda-operator) echo "$KEDA_BIN/keda-operator" ;;
    keda-metrics-apiserver) echo "$KEDA_BIN/keda-adapter" ;;
    *) return 1 ;;
  esac
}

has_keda() { [[ -f $STATE/keda-up ]]; }

# ---------------------------------------------------------------------------
# Build: KEDA's own go.mod and go.sum, from its module zip, as KEDA's Makefile builds it
# ---------------------------------------------------------------------------

# The build_* functions run under ci/cluster's build_into, which sets $tmp, the output directory.
# shellcheck disable=SC2154
build_keda() {
  local v=$KEDA_VERSION src work total
  work=$CACHE/build/keda-$v
  log "building KEDA $v (operator, metrics API server) from the Go module proxy, first time only:"
  log "  ~300 MB of modules, then 8-17 min of compiling on 2 cores"
  src=$(go mod download -json "$KEDA_MODULE@$v" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $src ]] || die "go mod download $KEDA_MODULE@$v gave no directory"
  rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
  cd "$work" || die "cannot enter $work"
  # Only the modules the two commands import (KEDA's go.mod lists many more, for its tests).
  log "KEDA: downloading its modules"
  go list -mod=readonly -deps ./cmd/operator ./cmd/adapter 2>&1 >"$tmp/packages" |
    awk '/^go: downloading/ { n++; if (n % 50 == 0) printf "cluster: KEDA: %d modules downloaded\n", n > "/dev/stderr" }
         !/^go: downloading/ { print > "/dev/stderr" }'
  total=$(wc -l <"$tmp/packages")
  rm -f "$tmp/packages"
  log "KEDA: compiling $total packages"
  go build -mod=readonly -v -o "$tmp/" \
    -ldflags "-s -w -X=$KEDA_MODULE/version.Version=${v#v} -X=$KEDA_MODULE/version.GitCommit=$v" \
    ./cmd/operator ./cmd/adapter 2>&1 |
    awk -v total="$total" '
      /^[a-zA-Z0-9_.\/-]+$/ { n++; if (n % 250 == 0) printf "cluster: KEDA: %d of %d packages compiled\n", n, total > "/dev/stderr"; next }
      { print > "/dev/stderr" }'
  [[ -x $tmp/operator && -x $tmp/adapter ]] || die "KEDA's go build made no binaries"
  mv "$tmp/operator" "$tmp/keda-operator"
  mv "$tmp/adapter" "$tmp/keda-adapter"
  # What `up --keda` installs, from the same module: the CRDs, the operator's RBAC and the
  # metrics API server's (auth delegation, the HPA controller's read access).
  mkdir -p "$tmp/crds" "$tmp/rbac"
  cp config/crd/bases/*.yaml "$tmp/crds/"
  cp config/rbac/role.yaml "$tmp/rbac/operator-role.yaml"
  cp config/rbac/role_binding.yaml "$tmp/rbac/operator-role-binding.yaml"
  cp config/metrics-server/role.yaml "$tmp/rbac/metrics-server-role.yaml"
  cp config/metrics-server/role_binding.yaml "$tmp/rbac/metrics-server-role-binding.yaml"
  cd / && rm -rf "$work"
}

# keda_build: build KEDA once (cached). Its own lock, so that `ci/cluster build --keda` can run in
# the background while `up` (which holds the cache's lock) builds or starts the rest.
keda_build() {
  [[ -f $KEDA_BIN/.complete ]] && return 0
  (
    exec 7>"$CACHE/.lock-keda"
    flock 7
    [[ -f $KEDA_BIN/.complete ]] && exit 0
    go_env
    export GOCACHE=$CACHE/build/gocache-keda
    build_into "$KEDA_BIN" build_keda
    rm -rf "$GOCACHE"
  )
}

# ---------------------------------------------------------------------------
# Start, stop
# ---------------------------------------------------------------------------

keda_write_config() {
  local k=$KEDA_STATE pki=$STATE/pki
  mkdir -p "$k/certs"
  # One key pair for both processes, as KEDA's own manifests share one Secret: the metrics API
  # server's serving certificate (the aggregator checks the Service's name), the operator's gRPC
  # serving certificate (the metrics API server connects to 127.0.0.1) and both gRPC clients'.
  # Its name is the ServiceAccount's, so KEDA's RBAC applies to it.
  issue_cert keda "/O=system:serviceaccounts/O=system:serviceaccounts:$KEDA_NAMESPACE/CN=system:serviceaccount:$KEDA_NAMESPACE:keda-operator" \
    serverAuth,clientAuth \
    "IP:127.0.0.1,IP:$NODE_ADDR,DNS:keda-operator.$KEDA_NAMESPACE.svc,DNS:keda-metrics-apiserver.$KEDA_NAMESPACE.svc"
  cp "$pki/keda.crt" "$k/certs/tls.crt"
  cp "$pki/keda.key" "$k/certs/tls.key"
  cp "$pki/ca.crt" "$k/certs/ca.crt"
  write_kubeconfig "$k/kubeconfig" keda "https://$HOST_ADDR:$API_PORT" localhost
  # Cluster names (the gateways' Services) through the node's CoreDNS, as in a pod.
  printf 'nameserver %s\nsearch %s.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
    "$NODE_ADDR" "$KEDA_NAMESPACE" >"$k/resolv.conf"
}

# The cluster objects KEDA needs: its namespace, CRDs and RBAC (from its module), and the
# aggregated API of its metrics server.
keda_apply_objects() {
  local ca
  kc create namespace "$KEDA_NAMESPACE" --dry-run=client -o yaml | kc apply -f - >&2
  # Server-side: the ScaledJob CRD is larger than client-side apply's annotation may be.
  kc apply --server-side --force-conflicts -f "$KEDA_BIN/crds/" >&2
  kc apply -f "$KEDA_BIN/rbac/" >&2
  kc wait --for condition=established --timeout=60s crd/scaledobjects.keda.sh crd/triggerauthentications.keda.sh >&2
  ca=$(base64 -w0 "$STATE/pki/ca.crt")
  kc apply -f - >&2 <<EOF
apiVersion: v1
kind: Service
metadata:
  name: keda-metrics-apiserver
  namespace: $KEDA_NAMESPACE
spec:
  ports:
    - {name: https, port: 443, targetPort: $KEDA_METRICS_SERVER_PORT}
---
# No selector: the metrics API server is a process on the node, at the node's address.
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: keda-metrics-apiserver
  namespace: $KEDA_NAMESPACE
  labels: {kubernetes.io/service-name: keda-metrics-apiserver}
addressType: IPv4
ports:
  - {name: https, port: $KEDA_METRICS_SERVER_PORT, protocol: TCP}
endpoints:
  - addresses: [$NODE_ADDR]
    conditions: {ready: true}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: $KEDA_APISERVICE
spec:
  service: {name: keda-metrics-apiserver, namespace: $KEDA_NAMESPACE, port: 443}
  group: external.metrics.k8s.io
  version: v1beta1
  caBundle: $ca
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
}

# start_keda NAME ARGS...: NAME in the node's network namespace, a mount namespace of its own
# (for the resolv.conf) and the node's cgroup (so `down` finds it whatever happens).
start_keda() {
  local name=$1 bin
  shift
  bin=$(keda_bin_of "$name")
  start_with "$name" "$bin" nsenter --net="/run/netns/$NODE_NETNS" -- \
    unshare --mount --propagation private -- \
    bash "$DATA/node-exec.sh" --cgroup "$NODE_CGROUP/keda" --resolv-conf "$KEDA_STATE/resolv.conf" -- \
    env KUBECONFIG="$KEDA_STATE/kubeconfig" WATCH_NAMESPACE="" POD_NAMESPACE="$KEDA_NAMESPACE" \
    KEDA_CLUSTER_OBJECT_NAMESPACE="$KEDA_NAMESPACE" "$bin" "$@"
}

# keda_started NAME: wait until NAME runs its own binary: start_keda's chain (nsenter, unshare,
# node-exec.sh, env) execs into it, and until then pid_of does not know it yet.
keda_started() {
  local deadline
  deadline=$(($(now) + 15))
  until pid_of "$1" >/dev/null; do
    (($(now) < deadline)) || die "$1 did not start (log: $STATE/logs/$1.log)"
    sleep 0.1
  done
}

keda_metrics_api_ready() {
  [[ $(kc get apiservice "$KEDA_APISERVICE" \
    -o jsonpath='{.status.conditions[?(@.type=="Available")].status}') == True ]]
}

# keda_up: add KEDA to the running cluster with its real node.
keda_up() {
  local start
  start=$(now)
  has_real_node || die "--keda needs the real node (ci/cluster up --real-node --keda)"
  [[ -f $STATE/pki/front-proxy-client.crt ]] ||
    die "this control plane was started without the aggregation layer KEDA needs (an older ci/cluster): ci/cluster down, then up again"
  keda_build
  touch "$STATE/keda-up"
  COMPONENTS+=("${KEDA_COMPONENTS[@]}")
  NODE_COMPONENTS+=("${KEDA_COMPONENTS[@]}")
  keda_write_config
  keda_apply_objects
  start_keda keda-operator --leader-elect=false --cert-dir="$KEDA_STATE/certs" --enable-cert-rotation=false \
    --metrics-service-bind-address="$KEDA_GRPC_ADDRESS" --health-probe-bind-address="$KEDA_OPERATOR_HEALTH_ADDRESS" \
    --enable-prometheus-metrics=false --enable-webhook-patching=false --enable-apiservice-patching=false \
    --zap-log-level=info --zap-encoder=console
  start_keda keda-metrics-apiserver --secure-port="$KEDA_METRICS_SERVER_PORT" --bind-address="$NODE_ADDR" \
    --cert-dir="$KEDA_STATE/certs" --tls-cert-file="$KEDA_STATE/certs/tls.crt" \
    --tls-private-key-file="$KEDA_STATE/certs/tls.key" --client-ca-file="$STATE/pki/ca.crt" \
    --lister-kubeconfig="$KEDA_STATE/kubeconfig" --authentication-kubeconfig="$KEDA_STATE/kubeconfig" \
    --authorization-kubeconfig="$KEDA_STATE/kubeconfig" --metrics-service-address="$KEDA_GRPC_ADDRESS" \
    --port="$KEDA_METRICS_SERVER_METRICS_PORT" --zap-log-level=info --zap-encoder=console
  keda_started keda-operator
  keda_started keda-metrics-apiserver
  wait_until keda-operator "KEDA's operator healthy" nsenter --net="/run/netns/$NODE_NETNS" \
    curl -fsS --max-time 2 "http://$KEDA_OPERATOR_HEALTH_ADDRESS/readyz"
  wait_until keda-metrics-apiserver "KEDA's external metrics API Available" keda_metrics_api_ready
  log "KEDA $KEDA_VERSION up in $(($(now) - start))s (operator, external.metrics.k8s.io)"
}

# keda_cleanup: once KEDA's processes are stopped and the control plane stays: without its
# server the APIService would fail every discovery (helm, kubectl) of the cluster.
keda_cleanup() {
  has_keda || return 0
  if api_ready >/dev/null 2>&1; then
    kc delete apiservice "$KEDA_APISERVICE" --ignore-not-found >&2 || true
  fi
  rm -rf "$KEDA_STATE" "$STATE/keda-up"
}

# A running cluster with KEDA: its processes are part of the cluster's and of the node's.
if has_keda; then
  COMPONENTS+=("${KEDA_COMPONENTS[@]}")
  NODE_COMPONENTS+=("${KEDA_COMPONENTS[@]}")
fi
