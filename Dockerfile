# The operator image: runs the operator, the archive build Jobs and the serving pods' digest check.
# Build: docker build -t REGISTRY/modeldeploy-operator:0.1.0 .
#
# The base image is pinned by its tag. To pin it by digest (a rebuild then gets the same bytes), put the
# digest of the multi-platform index after the tag, FROM python:3.11-slim@sha256:<digest>, taking it from
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
# and refresh it the same way when Debian or Python publish security fixes.
FROM python:3.11-slim
RUN groupadd --gid 65532 modeldeploy && useradd --uid 65532 --gid 65532 --no-create-home modeldeploy
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN pip install --no-cache-dir /src && rm -rf /src
USER 65532:65532
ENTRYPOINT ["modeldeploy"]
CMD ["operator", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
