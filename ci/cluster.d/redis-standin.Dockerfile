# A stand-in for the chart's default Redis image (redis.image in charts/cs-workers/values.yaml),
# for machines that cannot pull from Docker Hub: Debian's redis-server package on the stand-in
# base that ci/cluster.d/standin-images.sh builds. Not for production: the official image is.
#
# It starts the way the chart starts it: `sh -c '... exec redis-server /etc/redis/redis.conf'`
# as uid 10001 with a read-only root file system, /etc/redis from a ConfigMap, /run/redis and
# /tmp as emptyDirs and /data on a volume; probes run `redis-cli ... ping`.
#
#   docker build --network host --build-arg BASE_IMAGE=cs-workers-ci/python-standin:3.11-slim-bookworm \
#     -t cs-workers-ci/redis-standin:TAG - < ci/cluster.d/redis-standin.Dockerfile
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# Debian's package starts no service in a build (no init system). Its /etc/redis/redis.conf stays
# for `docker run`; the chart mounts its own over /etc/redis.
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 cs \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin cs \
    && mkdir -p /data /run/redis \
    && chown 10001:10001 /data /run/redis

LABEL dev.cs-workers.standin=redis \
      org.opencontainers.image.description="A stand-in for the official redis image, from Debian's redis-server, built by cs-workers ci/cluster.d/standin-images.sh"
ENV HOME=/tmp
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 6379
CMD ["redis-server", "--dir", "/data"]
