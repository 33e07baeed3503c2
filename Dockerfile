# Glueberry node + HTTP gateway (one process, one event loop).
#   docker build -t glueberry .
#   docker run -p 8080:8080 -p 4001:4001 -v glueberry-data:/data glueberry
#   docker exec <container> glueberry apikey create --scope admin
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY api ./api
COPY models ./models
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GLUEBERRY_DATA_DIR=/data \
    GLUEBERRY_HTTP_HOST=0.0.0.0 \
    GLUEBERRY_HTTP_PORT=8080 \
    GLUEBERRY_P2P_HOST=0.0.0.0 \
    GLUEBERRY_P2P_PORT=4001
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /data --create-home glueberry \
    && mkdir -p /keys && chown glueberry /data /keys
USER glueberry
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 4001
# Liveness through the gateway's /healthz (python is there; curl is not).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GLUEBERRY_HTTP_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["glueberry"]
CMD ["serve"]
