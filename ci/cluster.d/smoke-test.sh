#!/usr/bin/env bash
# Smoke test of a running `ci/cluster`: node pools, a Deployment, a Job, a bare
# restartPolicy=Never pod (what `helm test` runs), an unschedulable pod, a PVC,
# a nodeSelector on the size label and `kubectl logs`; with a real node
# (`up --real-node`) also a real container from the local registry, `exec`,
# a Service name through CoreDNS and kube-proxy, the host's address reached from
# a pod, and a local-path volume written by a non-root pod. Works in a throw-away
# namespace and deletes it. Ends with "N passed, N failed"; exit 1 on a failure.
#
#   eval "$(ci/cluster up [--real-node])" && ci/cluster.d/smoke-test.sh && ci/cluster down
set -uo pipefail

: "${KUBECONFIG:?set KUBECONFIG first: eval \"\$(ci/cluster up)\"}"
ns=cluster-smoke-$$
k() { kubectl --request-timeout=30s -n "$ns" "$@"; }
pass=0 fail=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

check() {
  local name=$1
  shift
  if "$@" >"$out" 2>&1; then
    pass=$((pass + 1))
    echo "ok    $name"
  else
    fail=$((fail + 1))
    echo "FAIL  $name"
    sed 's/^/      /' "$out" | tail -n 20
  fi
}

# eq EXPECTED COMMAND...: COMMAND's output (trimmed) must be EXPECTED.
eq() {
  local want=$1 got
  shift
  got=$("$@") || return 1
  got=$(echo "$got" | xargs)
  [[ $got == "$want" ]] || { echo "expected '$want', got '$got'"; return 1; }
}

nodes_ready() {
  kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.labels.size}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | sort | uniq -c
}

kubectl create namespace "$ns" >/dev/null || exit 1

check "5 nodes Ready: 2 small, 2 medium, 1 large" \
  eq "1 large=True 2 medium=True 2 small=True" nodes_ready
check "large node has 16 CPU / 64Gi allocatable" \
  eq "16 64Gi" kubectl get node large-1 -o jsonpath='{.status.allocatable.cpu} {.status.allocatable.memory}'

k create deployment web --image=nginx --replicas=2 >/dev/null
k create job job --image=busybox -- true >/dev/null
k run never --image=busybox --restart=Never -- true >/dev/null
k run big --image=nginx --overrides='{"spec":{"containers":[{"name":"big","image":"nginx","resources":{"requests":{"cpu":"100"}}}]}}' >/dev/null
k run on-large --image=nginx --overrides='{"spec":{"nodeSelector":{"size":"large"}}}' >/dev/null
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 2Gi
EOF

check "Deployment with 2 replicas gets 2 Ready pods" k rollout status deployment/web --timeout=60s
check "  ... and readyReplicas is 2" eq 2 k get deployment web -o jsonpath='{.status.readyReplicas}'
check "Job completes" k wait --for=condition=complete job/job --timeout=60s
check "restartPolicy=Never pod reaches Succeeded" \
  k wait --for=jsonpath='{.status.phase}'=Succeeded pod/never --timeout=60s
check "nodeSelector size=large lands on large-1" \
  eq large-1 k get pod on-large -o jsonpath='{.spec.nodeName}'
check "PVC without storageClassName binds (default StorageClass)" \
  k wait --for=jsonpath='{.status.phase}'=Bound pvc/data --timeout=60s
check "kubectl logs answers (from kwok, on loopback)" k logs deployment/web
sleep 3
check "pod requesting 100 CPU stays Pending (Unschedulable)" \
  eq "Pending Unschedulable" k get pod big -o jsonpath='{.status.phase} {.status.conditions[?(@.type=="PodScheduled")].reason}'

if kubectl get node cs-real-node >/dev/null 2>&1; then
  : "${CS_HOST_ADDRESS:?set CS_HOST_ADDRESS: eval \"\$(ci/cluster up --real-node)\"}"
  real='"nodeSelector":{"cs-workers.dev/real-node":"true"},"tolerations":[{"key":"cs-workers.dev/real-node","operator":"Exists"}]'
  restricted='"securityContext":{"runAsNonRoot":true,"runAsUser":10001,"fsGroup":10001,"seccompProfile":{"type":"RuntimeDefault"}}'
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: local}
spec: {accessModes: [ReadWriteOnce], storageClassName: local-path, resources: {requests: {storage: 1Gi}}}
EOF
  k run redis --image=redis:7.4.2-alpine --labels=app=redis --overrides="{\"spec\":{$real,$restricted,\"containers\":[{\"name\":\"redis\",\"image\":\"redis:7.4.2-alpine\",\"command\":[\"redis-server\",\"--protected-mode\",\"no\",\"--dir\",\"/data\"],\"volumeMounts\":[{\"name\":\"d\",\"mountPath\":\"/data\"}],\"securityContext\":{\"allowPrivilegeEscalation\":false,\"readOnlyRootFilesystem\":true,\"capabilities\":{\"drop\":[\"ALL\"]}}}],\"volumes\":[{\"name\":\"d\",\"persistentVolumeClaim\":{\"claimName\":\"local\"}}]}}" >/dev/null
  k expose pod redis --port=6379 >/dev/null
  check "real node: a pod from the local registry Running with a containerd container" \
    k wait --for=condition=Ready pod/redis --timeout=120s
  check "  ... its container ID is containerd's" \
    bash -c "kubectl -n $ns get pod redis -o jsonpath='{.status.containerStatuses[0].containerID}' | grep -q '^containerd://'"
  check "  ... kubectl exec runs in it, as uid 10001" eq 10001 k exec redis -- id -u
  check "  ... it writes its local-path volume (BGSAVE to /data)" \
    bash -c "kubectl -n $ns exec redis -- redis-cli save | grep -q OK && kubectl -n $ns exec redis -- ls /data | grep -q dump.rdb"
  k run client --image=redis:7.4.2-alpine --restart=Never --overrides="{\"spec\":{$real}}" -- \
    sh -c "redis-cli -h redis ping; redis-cli -h $CS_HOST_ADDRESS -p 1 ping 2>&1" >/dev/null
  k wait --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout=60s >/dev/null 2>&1
  check "  ... a pod reaches it by its Service name (CoreDNS, kube-proxy)" \
    bash -c "kubectl -n $ns logs client | grep -qx PONG"
  check "  ... and reaches the host at CS_HOST_ADDRESS (refused on an unused port: reached)" \
    bash -c "kubectl -n $ns logs client | grep -q 'Connection refused'"
fi

check "namespace deletion finishes (pods, PVC, PV cleaned up)" \
  kubectl delete namespace "$ns" --wait=true --timeout=90s

echo "$pass passed, $fail failed"
((fail == 0))
