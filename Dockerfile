# syntax=docker/dockerfile:1
#
# reghost image: the commands under cmd/ (server and loader), static,
# on distroless with no shell, running as the non-root user 65532 and
# writing only to /data, so it runs with a read-only root. The loader is
# the same image with another entry point (docker-compose.yml's loader
# services, deploy/k8s/components/loader):
#   docker run --rm -v reghost-data:/data --entrypoint /usr/local/bin/loader \
#     reghost:dev cloud --data-dir /data
#
#   docker build -t reghost:dev .
#   docker run --rm reghost:dev -print-example-config
#
# It needs a config mounted at /etc/reghost/config.yaml and a volume at
# /data: docker-compose.yml and deploy/k8s do both (deploy/README.md).
#
# deploy/deploytest reads this file: it runs the go build line below and
# checks the image's entry point, user, ports and paths against cmd/server
# and the manifests, so keep those in step.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: a source change then reuses the downloaded modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Every main package under cmd/ lands in /out/ under its directory's name.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...
# Empty directories to become /data and /data/geo (distroless has no
# mkdir). /data/geo is where docker-compose.yml mounts the GeoIP and
# cloud-range volume the loader fills: a new named volume takes the owner
# of the directory it is first mounted on, so the loader (65532) can
# write to it.
RUN mkdir -p /rootfs/data/geo

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The data directory, owned by the runtime user: a named volume mounted
# there (or at /data/geo) starts out with this owner, so the server and
# the loader can write to it.
COPY --from=build --chown=65532:65532 /rootfs/data /data
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# The embedded example config (used when the server is run without
# -config) keeps its data in "data" relative to here, that is /data too.
WORKDIR /
VOLUME ["/data"]
# 8080: public listener (listen); 9090: admin listener (admin_listen,
# which must be 0.0.0.0:9090 in the config to be reachable from outside
# the container).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/server"]
# The config is mounted here (compose: deploy/compose/reghost.yaml; k8s: a
# ConfigMap); the image ships none. Arguments given to docker run replace
# this line, so "docker run reghost:dev -print-example-config" works.
CMD ["-config", "/etc/reghost/config.yaml"]
