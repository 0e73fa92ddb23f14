# agent-gateway container. The install steps are the ones CI runs: scripts/system-deps.sh, then
# scripts/install.sh from the lock (requirements/runtime.txt: every version pinned and hashed).
FROM python:3.11-slim-bookworm

WORKDIR /app
COPY scripts/system-deps.sh scripts/system-deps.sh
RUN scripts/system-deps.sh runtime && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY scripts/install.sh scripts/install.sh
COPY clients/js/src ./clients/js/src
COPY gateway ./gateway
RUN scripts/install.sh runtime python && useradd --create-home --uid 10001 gateway \
    && mkdir -p /var/lib/agent-gateway && chown gateway /var/lib/agent-gateway

USER 10001
ENV AGENT_GATEWAY_HOST=0.0.0.0 \
    AGENT_GATEWAY_PORT=8000 \
    AGENT_GATEWAY_SESSIONS_DIR=/var/lib/agent-gateway/sessions \
    AGENT_GATEWAY_DEMO=off
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]
ENTRYPOINT ["agent-gateway", "serve"]
