# syntax=docker/dockerfile:1
# Multi-stage build of usage-gateway: the dependencies compiled in a layer of their own (cargo-chef),
# a locked release build of the workspace on top, then a slim non-root runtime.
#
# Base images: each is named once, here. Pin one by digest as `name:tag@sha256:<digest>` (the
# digest of the multi-platform index that `docker buildx imagetools inspect name:tag` prints as
# `Digest:`); the tag then only documents what the digest was. To bump, change the tag, inspect it
# again and replace the digest, in one commit. `--build-arg RUST_IMAGE=...` overrides one for a
# single build. .ci/deploy_check.py checks the references' form.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG CARGO_CHEF_VERSION=0.1.78

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# The recipe: the workspace's manifests and lock file, local crates' versions masked. It is
# unchanged by edits to sources, so the cook layer below stays cached.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# Every dependency, built from the recipe alone (the workspace's crates as empty stubs), with the
# same profile, package and lock file as the build below.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked -p usage-gateway --recipe-path recipe.json
# The workspace: the binary embeds config/demo.toml; the others are what `cargo` reads of the
# workspace's manifests (the gateway's test target lives in tests/).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY tests ./tests
COPY openapi ./openapi
COPY config ./config
COPY fixtures ./fixtures
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked -p usage-gateway \
 && strip target/release/usage-gateway

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates is left unpinned on purpose: its version follows the (pinned) base image's
# Debian release and its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin usage
COPY --from=build /src/target/release/usage-gateway /usr/local/bin/usage-gateway
COPY config/example.toml /etc/usage-gateway/config.toml
USER 10001:10001
# The configuration is read from this path; mount your own over it. Secrets come from the
# environment through `${VAR}` references in the file (e.g. USAGE_GATEWAY_JWT_SECRET, DIGITALOCEAN_TOKEN).
ENV USAGE_GATEWAY_CONFIG=/etc/usage-gateway/config.toml \
    USAGE_GATEWAY_LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
# The binary probes its own /healthz (at USAGE_GATEWAY_LISTEN), so the image needs no curl.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/usage-gateway", "healthcheck", "--timeout", "2s"]
ENTRYPOINT ["/usr/local/bin/usage-gateway"]
CMD ["--log-format", "json", "serve"]
