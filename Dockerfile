# syntax=docker/dockerfile:1
# One image for every geoingest process; the command picks it:
#   geo-edge | geo-mirror | geo-central | geo-router
# Stage 1 builds wheels for the project and its dependencies; stage 2 installs only the wheels.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    GEOINGEST_REGIONS=/app/regions.yaml
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels geoingest \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin geo \
 && mkdir -p /app /data \
 && chown geo /data
COPY regions.yaml /app/regions.yaml
WORKDIR /app
USER geo
VOLUME ["/data"]
# edge HTTP, edge metrics, mirror admin, central HTTP, router admin
EXPOSE 8080 9100 9200 8000 9180
STOPSIGNAL SIGTERM
CMD ["geo-edge"]
