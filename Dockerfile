# syntax=docker/dockerfile:1
# smtp-graph-gateway container image.
#
#   docker build -t smtp-graph-gateway .
#   docker run -d --name smtp-graph-gateway \
#     --read-only --tmpfs /tmp:size=16m --cap-drop ALL --security-opt no-new-privileges \
#     --stop-timeout 60 \
#     -v smtp-graph-gateway-spool:/var/lib/smtp-graph-gateway \
#     -v "$PWD/config.yaml:/etc/smtp-graph-gateway/config.yaml:ro" \
#     -v "$PWD/contoso-secret:/run/secrets/contoso-secret:ro" \
#     -p 25:2525 -p 127.0.0.1:8025:8025 smtp-graph-gateway
#
# The config must have:
#   spool.directory: /var/lib/smtp-graph-gateway/spool      (the volume: the only durable place)
#   http.listen: 0.0.0.0:8025 (or 127.0.0.1:8025)            (the HEALTHCHECK asks /readyz there)
#   tenants[].client_secret_file: /run/secrets/NAME           (a file readable by uid 10001, mode 0600)
#   listeners on ports >= 1024 (2525, 2587, 2465), published as 25, 587, 465 by the host:
#   the process is not root, so it holds no capabilities and cannot bind ports below 1024
#   (under host networking; Docker's bridge networks allow any port).
# Give `docker stop` more than shutdown.drain_timeout (30s) before it kills: --stop-timeout 60
# (compose: stop_grace_period: 60s). deploy/compose.yaml has all of this.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- Build: the project's wheel and every dependency's wheel --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- Runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="smtp-graph-gateway" \
      org.opencontainers.image.description="SMTP relay that delivers mail through Microsoft Graph" \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric identity, so volume ownership and `--user 10001` agree across rebuilds.
# The state directory is created here with that owner, so a new named volume inherits it.
RUN groupadd --system --gid 10001 smtp-graph-gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin smtp-graph-gateway \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/smtp-graph-gateway /var/lib/smtp-graph-gateway/spool \
    && install -d -o root -g root -m 0755 /etc/smtp-graph-gateway

# Installed from the build stage's wheels only (no index): what was built is what runs.
# pip compiles the bytecode now, so nothing is written at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/smtp-graph-gateway \
    && /opt/smtp-graph-gateway/bin/pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl \
    && /opt/smtp-graph-gateway/bin/smtp-graph-gateway --help > /dev/null

# Read-only root file system: no bytecode writes, HOME and TMPDIR on the /tmp tmpfs
# (`--tmpfs /tmp`), the spool on the volume. Nothing else is written.
ENV PATH=/opt/smtp-graph-gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

# Accepted mail lives here until Graph has it: keep it on a volume, back it up.
VOLUME ["/var/lib/smtp-graph-gateway"]
WORKDIR /var/lib/smtp-graph-gateway
USER 10001:10001

# SMTP (STARTTLS), submission, submissions (implicit TLS), HTTP /healthz /readyz /metrics.
EXPOSE 2525 2587 2465 8025

# Ready = listeners bound, spool writable and no tenant's last token request failed (503
# otherwise). The venv's Python, as slim has no curl; proxies are bypassed so an HTTP_PROXY
# meant for Graph cannot intercept it.
# HEALTHCHECK_URL overrides the address when http.listen uses another port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/smtp-graph-gateway/bin/python", "-c", "import os, sys, urllib.request as r\ntry:\n    r.build_opener(r.ProxyHandler({})).open(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:8025/readyz'), timeout=4)\nexcept Exception as e:\n    sys.exit(f'not ready: {e}')"]

# SIGTERM drains (listeners close, transactions and Graph calls finish within
# shutdown.drain_timeout); what is left stays queued for the next start.
STOPSIGNAL SIGTERM
ENTRYPOINT ["smtp-graph-gateway"]
CMD ["serve", "--config", "/etc/smtp-graph-gateway/config.yaml"]
