# pandamode dashboard: the web app with its training worker, on SQLite in the /data volume.
#   docker build -t pandamode .
#   docker run -p 127.0.0.1:8000:8000 -v pandamode-data:/data pandamode
# Inside the container it binds 0.0.0.0, so every request but /healthz needs the token: pass
# -e PANDAMODE_TOKEN=... and open http://127.0.0.1:8000/?token=... once, or open the link with a
# generated token printed at start (docker logs).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PANDAMODE_HOST=0.0.0.0 \
    PANDAMODE_PORT=8000 \
    PANDAMODE_DATA_DIR=/data

RUN groupadd --system --gid 10001 pandamode \
    && useradd --system --uid 10001 --gid pandamode --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin pandamode

WORKDIR /opt/pandamode
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY app ./app
COPY templates ./templates
COPY static ./static
RUN pip install --no-cache-dir .

RUN mkdir -p /data && chown pandamode:pandamode /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PANDAMODE_PORT', '8000') + '/healthz', timeout=4)"]

CMD ["pandamode", "serve"]
