#!/usr/bin/env bash
# Stand-in images for machines that cannot pull from Docker Hub (ours: no registry is
# reachable). Built from Debian packages, in the Docker engine $DOCKER_HOST names:
#
#   cs-workers-ci/python-standin:3.11-slim-bookworm   stands in for python:3.11-slim-bookworm,
#       the base of images/runtime and images/gateway (cs-cluster build --base-image).
#       debootstrap --variant=minbase bookworm + Debian's python3 (3.11), pip and venv; the
#       rootfs tarball is cached, so a new Docker data root does not mean a new debootstrap.
#   cs-workers-ci/redis-standin:<the chart's redis tag>   stands in for the chart's default Redis
#       image: Debian's redis-server (7.0) on that base, uid 10001 (redis-standin.Dockerfile).
#       With CS_REGISTRY set it is pushed as $CS_REGISTRY/library/<redis.image.repository>:<tag>,
#       the chart's default name, for a containerd that mirrors Docker Hub from CS_REGISTRY.
#
#   eval "$(bash ci/cluster.d/standin-images.sh)"    # prints only: export CS_BASE_IMAGE=...
#
# Progress goes to stderr. What exists (image in the engine with this recipe, pushed image with the
# same ID) is skipped, so a warm run takes seconds. Needs root and debootstrap for the first build.
#
# Environment:
#   DOCKER_HOST          the engine to use (docker's default when unset); the script starts none
#   CS_REGISTRY          registry host:port to push the Redis stand-in to (plain HTTP); optional
#   CS_WORKERS_CACHE     cache root (default ${XDG_CACHE_HOME:-~/.cache}/cs-workers); the rootfs
#                        tarball goes to $CS_WORKERS_CACHE/images/
#   CS_DEBIAN_MIRROR     the Debian mirror for debootstrap (default http://deb.debian.org/debian)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${CS_WORKERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cs-workers}/images
MIRROR=${CS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# Bump when the base recipe below changes: the cached tarball and the engine's image are rebuilt.
BASE_RECIPE=2
BASE_IMAGE=cs-workers-ci/python-standin:3.11-slim-bookworm
BASE_TARBALL=$CACHE/python-standin-3.11-slim-$SUITE-r$BASE_RECIPE.tar.gz
REDIS_DOCKERFILE=$HERE/redis-standin.Dockerfile
STANDIN_LABEL=dev.cs-workers.standin
RECIPE_LABEL=dev.cs-workers.recipe
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf 'standin-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s; }

need() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null || die "'$c' is required but not installed"; done
}

# The recipe label of an image in the engine; empty when the image is absent.
image_recipe() {
  docker image inspect --format "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$1" 2>/dev/null || true
}

# The chart's default Redis image, "repository tag", from charts/cs-workers/values.yaml.
chart_redis_image() {
  local python=$REPO/.venv/bin/python
  [[ -x $python ]] || python=python3
  "$python" - "$REPO/charts/cs-workers/values.yaml" <<'EOF'
import sys

import yaml

with open(sys.argv[1]) as values:
    image = yaml.safe_load(values)["redis"]["image"]
print(image["repository"], image["tag"])
EOF
}

# What debian:bookworm-slim (under python:3.11-slim-bookworm) does to stay small: apt keeps no
# package caches, and dpkg installs no documentation, man pages or translations (copyrights stay).
# Every path is under the rootfs given; an empty argument is refused.
slim_like_the_official_image() {
  local rootfs=${1:?slim_like_the_official_image needs the rootfs}
  [[ $rootfs != / && -d $rootfs/etc/apt/apt.conf.d ]] || die "not a rootfs: $rootfs"
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/share/lintian/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb
}

# debootstrap into a private mount namespace (its /proc and /sys mounts vanish with it, also on
# failure), then make the rootfs look like the official image where our Dockerfiles depend on it.
build_base_tarball() {
  need debootstrap tar gzip unshare
  [[ $(id -u) == 0 ]] || die "debootstrap needs root to build $BASE_TARBALL"
  [[ -r $HOST_CA_BUNDLE ]] || die "no CA bundle at $HOST_CA_BUNDLE"
  local work start rootfs file
  start=$(now)
  mkdir -p "$CACHE"
  work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now: it is local to this function
  trap "rm -rf '$work'" EXIT
  rootfs=$work/rootfs
  log "debootstrap --variant=minbase $SUITE from $MIRROR (about 2-3 minutes, once)"
  unshare --mount --propagation private \
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  # pip installs into the image's own Python, as in the official image (PEP 668's marker off).
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  # Outbound HTTPS here goes through an intercepting proxy: trust the host's CAs. Also as a local
  # CA so that update-ca-certificates (run when a build installs ca-certificates) keeps them.
  install -m 0644 "$HOST_CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/cs-workers-host-bundle.crt"
  install -m 0644 "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  # apt as the host has it (mirrors, snapshot settings), when the host is the same Debian release.
  if grep -qx "VERSION_CODENAME=$SUITE" /etc/os-release 2>/dev/null; then
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [[ -f $file ]] && cp "$file" "$rootfs$file"
    done
    # Only how mirrors are reached and checked (e.g. a snapshot's Valid-Until), not the host's hooks.
    for file in /etc/apt/apt.conf.d/*; do
      if [[ -f $file ]] && grep -Eq '^Acquire::(Check-Valid-Until|Check-Date|https?::)' "$file"; then
        cp "$file" "$rootfs$file"
      fi
    done
  fi
  slim_like_the_official_image "$rootfs"
  rm -rf "${rootfs:?}"/dev/* "${rootfs:?}/etc/resolv.conf" "${rootfs:?}/etc/hostname"
  tar --numeric-owner -C "$rootfs" -cf - . | gzip -1 >"$work/base.tar.gz"
  mv "$work/base.tar.gz" "$BASE_TARBALL"
  rm -rf "$work"
  trap - EXIT
  log "cached $BASE_TARBALL ($(du -h "$BASE_TARBALL" | cut -f1), $(($(now) - start))s)"
}

ensure_base_image() {
  if [[ $(image_recipe "$BASE_IMAGE") == "base-r$BASE_RECIPE" ]]; then
    log "$BASE_IMAGE: present"
    return
  fi
  [[ -s $BASE_TARBALL ]] || build_base_tarball
  local start
  start=$(now)
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL $STANDIN_LABEL=python $RECIPE_LABEL=base-r$BASE_RECIPE" \
    --change 'LABEL org.opencontainers.image.description="A stand-in for python:3.11-slim-bookworm, built from Debian packages by cs-workers ci/cluster.d/standin-images.sh"' \
    --change 'CMD ["python3"]' \
    "$BASE_TARBALL" "$BASE_IMAGE" >/dev/null
  log "$BASE_IMAGE: imported ($(($(now) - start))s)"
}

# The Redis stand-in's recipe: its Dockerfile and the base's; a change to either rebuilds it.
redis_recipe() {
  printf 'redis-%s-base-r%s' "$(sha256sum <"$REDIS_DOCKERFILE" | cut -c1-16)" "$BASE_RECIPE"
}

ensure_redis_image() {
  local image=$1 recipe start
  recipe=$(redis_recipe)
  if [[ $(image_recipe "$image") == "$recipe" ]]; then
    log "$image: present"
    return
  fi
  start=$(now)
  log "$image: building from Debian's redis-server"
  # No build context: the Dockerfile copies nothing. Host network: the engine may have no bridge.
  DOCKER_BUILDKIT=0 docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --label "$RECIPE_LABEL=$recipe" --tag "$image" - <"$REDIS_DOCKERFILE" >&2
  log "$image: built ($(($(now) - start))s)"
}

# Push unless the registry already holds this exact image (its manifest's config digest is the
# local image ID), so a warm run does not upload again.
push_once() {
  local image=$1 target=$2 repository tag local_id remote_id
  repository=${target#*/}
  tag=${repository##*:}
  repository=${repository%:*}
  local_id=$(docker image inspect --format '{{.Id}}' "$image")
  remote_id=$(curl -fsS --max-time 10 \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$CS_REGISTRY/v2/$repository/manifests/$tag" 2>/dev/null \
    | tr -d ' \n\t' | sed -n 's/.*"config":{[^}]*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' || true)
  if [[ $remote_id == "$local_id" ]]; then
    log "$target: pushed already"
    return
  fi
  docker tag "$image" "$target"
  docker push "$target" >&2 || die "docker push $target failed (is $CS_REGISTRY in the engine's --insecure-registry?)"
  log "$target: pushed"
}

main() {
  need docker curl sha256sum flock
  docker info >/dev/null 2>&1 || die "no Docker engine answers at ${DOCKER_HOST:-the default socket}"
  mkdir -p "$CACHE"
  # One builder at a time per cache (ci/cluster and a developer may run this together).
  exec 9>"$CACHE/.lock"
  flock 9
  local redis_repository redis_tag redis_image start
  start=$(now)
  read -r redis_repository redis_tag < <(chart_redis_image)
  redis_image=cs-workers-ci/redis-standin:$redis_tag
  ensure_base_image
  ensure_redis_image "$redis_image"
  if [[ -n ${CS_REGISTRY:-} ]]; then
    # Docker Hub's names: docker.io/ is implied, a one-part repository is library/<name>.
    redis_repository=${redis_repository#docker.io/}
    case $redis_repository in
      *.*/* | *:*/* | localhost/*) die "redis.image.repository $redis_repository is not on Docker Hub: CS_REGISTRY mirrors only Docker Hub" ;;
      */*) ;;
      *) redis_repository=library/$redis_repository ;;
    esac
    push_once "$redis_image" "$CS_REGISTRY/$redis_repository:$redis_tag"
  fi
  log "ready in $(($(now) - start))s"
  printf 'export CS_BASE_IMAGE=%q\n' "$BASE_IMAGE"
}

main "$@"
