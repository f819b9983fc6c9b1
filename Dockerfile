# citycode service image: gunicorn (gthread workers) in front of the Flask app.
# Production settings come from the environment, for example:
#   CITYCODE_DATABASE_URL=postgresql+psycopg://citycode@db/citycode
#   CITYCODE_REDIS_URL=redis://redis:6379/0
#   CITYCODE_OIDC_ISSUER=https://id.city.example  CITYCODE_OIDC_CLIENT_ID=citycode  CITYCODE_OIDC_CLIENT_SECRET=...
#   CITYCODE_SECURE_COOKIES=true  CITYCODE_DEMO_DATA=false
# Keys live in CITYCODE_HOME (/data): mount a volume there, readable by this container only.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libzbar0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data --create-home citycode

WORKDIR /app
COPY sdk/ /app/sdk/
RUN pip install --no-cache-dir ./sdk
COPY pyproject.toml README.md /app/
COPY codeservice/ /app/codeservice/
COPY issuers/ /app/issuers/
COPY verifiers/ /app/verifiers/
RUN pip install --no-cache-dir .

USER citycode
ENV CITYCODE_HOME=/data \
    CITYCODE_DEV_SIGNIN=false \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000

# 'citycode init' migrates the schema and creates missing keys once, before any worker starts.
CMD ["sh", "-c", "citycode init && exec gunicorn --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-4} --worker-class gthread --threads 8 --access-logformat '%(h)s \"%(m)s %(U)s\" %(s)s %(B)s %(M)sms' --access-logfile - codeservice.wsgi:app"]
