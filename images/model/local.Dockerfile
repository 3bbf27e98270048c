# A model's image from a local directory instead of a git repository: the build context is the
# model's repository folder (its `cs-config/` is copied in). `cs-cluster build` uses this when a
# model's repo_url is a local directory, as the bundled examples' are; the result is the same as
# images/model/Dockerfile's.
#
#   docker build -f images/model/local.Dockerfile --build-arg RUNTIME_IMAGE=cs-workers-runtime:TAG \
#     --build-arg OWNER=cs-examples --build-arg TITLE=Celery-Sum -t ...:TAG examples/models/celery-sum
ARG RUNTIME_IMAGE
FROM ${RUNTIME_IMAGE}
ARG OWNER
ARG TITLE
ARG SIM_TIME_LIMIT
ARG BUILD_NUM=0
ARG INSTALL_NUM=0
USER root
COPY cs-config /opt/model/cs-config
RUN echo "build ${BUILD_NUM} install ${INSTALL_NUM}" \
    && pip install /opt/model/cs-config \
    && rm -rf /opt/model \
    && python -c "import cs_config.functions"
USER 10001:10001
ENV OWNER=${OWNER} \
    TITLE=${TITLE} \
    SIM_TIME_LIMIT=${SIM_TIME_LIMIT}
LABEL org.opencontainers.image.title="${OWNER}/${TITLE} model for cs-workers"
