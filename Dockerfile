# syntax=docker/dockerfile:1
# amlops controller image: docker build -t amlops:dev .
# Multi-stage: build the release binary with the locked dependency set, ship only the
# binary on distroless (glibc + libgcc, no shell, no package manager), as UID 65532.

FROM rust:1-bookworm AS build
WORKDIR /src
# The whole workspace (filtered by .dockerignore): every member's manifest must exist for
# the workspace to load, but only the operator crate (`-p amlops`) is built — not the Azure
# emulator, the fake API server, the test kit or the development commands.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p amlops --bin amlops \
 && install -D -m 0755 target/release/amlops /out/amlops

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="amlops" \
      org.opencontainers.image.description="Kubernetes operator for Azure Machine Learning inference clusters" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/amlops /amlops
USER 65532:65532
ENTRYPOINT ["/amlops"]
CMD ["run"]
