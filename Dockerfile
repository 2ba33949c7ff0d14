# Production image for the storefront: gunicorn (default command), Celery worker and beat
# all run from this one image; docker-compose.yml picks the command per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. Every pin in the lock
# installs from a binary wheel (checked on linux x86_64), so no compiler is needed.
COPY requirements.lock.txt ./
RUN pip install --no-cache-dir -r requirements.lock.txt

# Unprivileged runtime user with a fixed uid/gid (10001). It gets a home because gunicorn
# puts its control socket there.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

# The code stays owned by root (read-only to the app user).
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

CMD ["gunicorn", "storefront.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-"]
