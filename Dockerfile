FROM python:3.11-slim
RUN useradd --system --home /data --uid 10001 pocketnoc && mkdir -p /data && chown pocketnoc /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agents agents
COPY server server
COPY web web
COPY config config
COPY docker docker
RUN pip install --no-cache-dir .
USER pocketnoc
ENV POCKETNOC_DATA_DIR=/data POCKETNOC_HOST=0.0.0.0 POCKETNOC_PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080
VOLUME ["/data"]
# The same image runs workers: `pocketnoc worker --name NAME` (see docker-compose.yml); both stop cleanly on SIGTERM.
STOPSIGNAL SIGTERM
CMD ["pocketnoc", "serve"]
