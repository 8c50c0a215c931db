# syntax=docker/dockerfile:1
# Switchyard as a container image: one executable on a distroless glibc base, as a non-root user.
#
#   docker build -t switchyard .
#   docker run --rm -p 8080:8080 -p 9901:9901 -e SWITCHYARD_ADMIN_TOKEN=... \
#     -v "$PWD/config.json:/etc/switchyard/config.json:ro" switchyard
#   docker run --rm -v "$PWD/config.json:/etc/switchyard/config.json:ro" switchyard \
#     check --config /etc/switchyard/config.json
#
# Readiness: GET /ready on the admin listener (200 once every worker listens and a routed
# cluster has a usable backend; 503 while draining); liveness: GET /live. The image has no shell
# or HTTP client for a HEALTHCHECK, so point the orchestrator's HTTP probe there: set
# admin.listen to "0.0.0.0:9901" in the config, which then requires a token (admin.token, or the
# SWITCHYARD_ADMIN_TOKEN variable), sent by the probe as "Authorization: Bearer …".
# Stopping drains for up to drain.delay + drain.timeout (30s by default), longer than Docker's
# 10s: use `docker stop -t 45`, compose's stop_grace_period or Kubernetes'
# terminationGracePeriodSeconds.

# Build: the pinned Deno from the npm registry (as scripts/dev.sh installs it), then
# `deno task compile`, which downloads the runtime it embeds.
FROM node:22-bookworm-slim AS build
ARG TARGETARCH
WORKDIR /src
COPY .deno-version ./
RUN case "${TARGETARCH:-amd64}" in \
      amd64) arch=x64 ;; \
      arm64) arch=arm64 ;; \
      *) echo "no Deno build for ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && mkdir -p /opt/deno && cd /opt/deno \
 && npm pack --silent "@deno/linux-${arch}-glibc@$(tr -d '[:space:]' < /src/.deno-version)" \
 && tar xzf ./*.tgz && rm ./*.tgz
ENV PATH=/opt/deno/package:/opt/deno/package/bin:$PATH
# Dependencies first, so a source change does not download them again.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY . .
RUN deno task compile && ./dist/switchyard --version

# Runtime: glibc and libgcc, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/switchyard /usr/local/bin/switchyard
USER nonroot
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["--config", "/etc/switchyard/config.json"]
