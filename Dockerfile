# The operator image: runs the operator, the archive build Jobs and the serving pods' digest check.
# Build: docker build -t REGISTRY/modeldeploy-operator:0.1.0 .
FROM python:3.11-slim
RUN groupadd --gid 65532 modeldeploy && useradd --uid 65532 --gid 65532 --no-create-home modeldeploy
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN pip install --no-cache-dir /src && rm -rf /src
USER 65532:65532
ENTRYPOINT ["modeldeploy"]
CMD ["operator", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
