# The Vigil monitor image (the service image is the bento: `bentoml containerize`).
#   docker build -f deploy/docker/monitor.Dockerfile -t <registry>/vigil-monitor:<tag> .
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 VIGIL_HOST=0.0.0.0 VIGIL_HOME=/data/vigil \
    WHYLOGS_NO_ANALYTICS=True MLFLOW_DISABLE_TELEMETRY=true BENTOML_DO_NOT_TRACK=True
COPY pyproject.toml constraints.txt README.md ./
COPY vigil/ vigil/
COPY monitor/ monitor/
COPY lifecycle/ lifecycle/
COPY converter/ converter/
COPY loadtest/ loadtest/
COPY service.py ./
RUN pip install -c constraints.txt . && mkdir -p /data/vigil && chown 65534:65534 /data/vigil
# State (SQLite, reference cache) lives on the StatefulSet's volume.
VOLUME /data/vigil
EXPOSE 3100
USER 65534
ENTRYPOINT ["vigil"]
CMD ["monitor"]
