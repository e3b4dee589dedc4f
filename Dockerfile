# syntax=docker/dockerfile:1
#
# The gateway's image: `chatgate serve` on 0.0.0.0:8000 as a non-root user.
#
#   docker build -t chatgate .
#   docker run -p 8000:8000 -e ENVIRONMENT=staging -e CHATGATE_JWT_SECRET=... chatgate
#
# There is no default ENVIRONMENT: say the tier at run time. Listening beyond
# loopback with no tier counts as production, which refuses to start without
# CHATGATE_JWT_SECRET (or a public key or JWKS URL). docs/deploy.md has the rest.

# Build the wheels of chatgate and of every dependency, so that the runtime
# stage installs offline and carries no build tools or pip cache.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The chat page serves the JavaScript client, which lives in its npm package folder.
COPY clients/js/chatgate.js ./clients/js/chatgate.js
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels '.[postgres,redis]'

FROM python:3.11-slim
# The same install as the README's, from the wheels built above; the bind
# mount keeps the wheels out of the image's layers.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        --no-index --find-links=/wheels 'chatgate[postgres,redis]'

# A fixed numeric id, so that Kubernetes' runAsNonRoot can check it. The
# working directory is the user's: the default SQLite store writes there.
RUN groupadd --system --gid 10001 chatgate \
    && useradd --system --uid 10001 --gid chatgate --home-dir /var/lib/chatgate \
        --create-home --shell /usr/sbin/nologin chatgate
WORKDIR /var/lib/chatgate
USER 10001:10001

# The port stays unset so that a platform's PORT (Cloud Run) still applies.
ENV CHATGATE_HOST=0.0.0.0
EXPOSE 8000

# No curl in the slim image: Python asks /healthz, which answers once the
# store and the broker have started and until the process exits.
HEALTHCHECK --interval=10s --timeout=3s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CHATGATE_PORT') or os.environ.get('PORT') or '8000'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]

# SIGTERM starts the drain: sockets close with 1012, the process exits 0
# within CHATGATE_DRAIN_TIMEOUT_S (8 s), inside Docker's 10 s stop timeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["chatgate"]
CMD ["serve"]
