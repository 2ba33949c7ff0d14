# Production image for the storefront: gunicorn (default command), Celery worker and beat
# all run from this one image; docker-compose.yml picks the command per service.
#
# Two stages. The first installs the runtime lock (requirements.lock.txt: what runs the shop, with every hash;
# no test tools, no localstripe) into a virtualenv; the image itself gets that virtualenv and the code only.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every pin in the lock installs from a binary wheel (checked on linux x86_64), so no compiler is needed;
# --require-hashes refuses any file whose hash the lock does not list, and any package it does not pin.
COPY requirements.lock.txt /tmp/requirements.lock.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.lock.txt

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# Unprivileged runtime user with a fixed uid/gid (10001). It gets a home because gunicorn
# puts its control socket there.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

# The packages, then the code (without tests, devtools or deploy files but gunicorn's config: .dockerignore);
# both stay owned by root, read-only to the app user.
COPY --from=build /opt/venv /opt/venv
COPY . .

# Collect static files for WhiteNoise (DEBUG=0 uses the compressed manifest storage).
# DEBUG=0 refuses to start without these four secrets, a DATABASE_URL and a REDIS_URL.
# The values below are throwaway, exist only for this RUN step and are never used at run
# time; collectstatic connects to neither server. (The Fernet key is just base64 of a
# 32-byte placeholder string.)
# The private-media folder is created here, owned by the app user, so a new named
# volume mounted on it starts out writable.
RUN DEBUG=0 \
    SECRET_KEY=build-only-not-a-secret \
    KEY_ENCRYPTION_KEYS=YnVpbGQtb25seS1kdW1teS1rZXktbm90LXNlY3JldCE= \
    KEY_FINGERPRINT_SECRET=build-only-not-a-secret \
    STRIPE_WEBHOOK_SECRET=whsec_build_only_not_a_secret \
    DATABASE_URL=postgres://build-only@127.0.0.1:9/none \
    REDIS_URL=redis://127.0.0.1:9/0 \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/media/private \
    && chown app:app /app/media/private

USER 10001:10001

EXPOSE 8000

# The web process answers /healthz (storefront.health; before ALLOWED_HOSTS and the https redirect). The worker and
# beat run this image too: docker-compose.yml gives the worker its own check and switches this one off for beat.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# Workers, threads, timeouts and the address come from the environment (GUNICORN_*; deploy/gunicorn.conf.py).
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "storefront.wsgi:application"]
