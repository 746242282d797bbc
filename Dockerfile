# The p2pchain node image (docs/deploy.md): one node per container, run from a node.toml that
# is mounted at run time. Nothing secret is built in: the build context is only pyproject.toml,
# README.md and p2pchain/ (see .dockerignore); keys arrive by mount, never by COPY.
#
#   docker build -t p2pchain:0.1.0 .
#
# Ports, paths and the user match p2pchain/cli/deploy.py, which writes the compose and
# Kubernetes files that run this image (`p2pchain init --deploy compose|k8s`).

FROM python:3.11-slim AS build
RUN python -m venv /opt/p2pchain
COPY pyproject.toml README.md /src/
COPY p2pchain /src/p2pchain
# Dependencies come from PyPI, p2pchain itself from the source tree.
RUN /opt/p2pchain/bin/pip install --no-cache-dir /src

FROM python:3.11-slim
ENV PATH=/opt/p2pchain/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 p2pchain \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/p2pchain \
        --shell /usr/sbin/nologin p2pchain \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/p2pchain /etc/p2pchain
COPY --from=build /opt/p2pchain /opt/p2pchain
USER 10001:10001
WORKDIR /var/lib/p2pchain
# The node's database (data_dir); its config and keys go to /etc/p2pchain (a read-only mount).
VOLUME ["/var/lib/p2pchain"]
# P2P TCP, P2P WebSocket, JSON-RPC (WebSocket), Prometheus metrics.
EXPOSE 30300/tcp 30301/tcp 8645/tcp 9645/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["p2pchain", "rpc", "chain_head", "--rpc", "ws://127.0.0.1:8645"]
# SIGTERM (docker stop) shuts the node down cleanly.
ENTRYPOINT ["python", "-m", "p2pchain", "node", "--config", "/etc/p2pchain/node.toml"]
