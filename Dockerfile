# citycode service image: gunicorn (gthread workers) in front of the Flask app.
# Production settings come from the environment, for example:
#   CITYCODE_DATABASE_URL=postgresql+psycopg://citycode@db/citycode
#   CITYCODE_REDIS_URL=redis://redis:6379/0
#   CITYCODE_OIDC_ISSUER=https://id.city.example  CITYCODE_OIDC_CLIENT_ID=citycode  CITYCODE_OIDC_CLIENT_SECRET=...
#   CITYCODE_SECURE_COOKIES=true  CITYCODE_DEMO_DATA=false
# Keys live in CITYCODE_HOME (/data): mount a volume there, readable by this container only.
FROM python:3.11-slim

# Fonts: the pages are Chinese first and Tibetan (Noto Sans CJK, Tibetan Machine Uni), for anything the
# server draws and for a browser on the image; tzdata for the city's zone (CITYCODE_CITY_TZ).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libzbar0 fonts-noto-cjk fonts-tibetan-machine tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data --create-home citycode

WORKDIR /app
COPY sdk/ /app/sdk/
RUN pip install --no-cache-dir ./sdk
COPY pyproject.toml README.md /app/
COPY codeservice/ /app/codeservice/
COPY issuers/ /app/issuers/
COPY verifiers/ /app/verifiers/
RUN pip install --no-cache-dir . \
 && python -c "import codeservice.catalogs as c; c.compile_all()"

USER citycode
ENV CITYCODE_HOME=/data \
    CITYCODE_DEV_SIGNIN=false \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000

# 'citycode serve' runs 'citycode init' (schema migration, missing keys) once in the gunicorn master
# before any worker starts, and refuses several workers unless CITYCODE_REDIS_URL is set (the replay
# guard must be shared). With Redis it starts 2 x cores + 1 workers unless --workers says otherwise.
CMD ["citycode", "serve", "--host", "0.0.0.0", "--port", "8000"]
