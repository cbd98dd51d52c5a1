# syntax=docker/dockerfile:1
# Multi-stage build of usage-gateway: a locked release build, then a slim non-root runtime.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The whole workspace is needed: the binary embeds config/demo.toml.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY tests ./tests
COPY openapi ./openapi
COPY config ./config
COPY fixtures ./fixtures
RUN cargo build --release --locked -p usage-gateway \
 && strip target/release/usage-gateway

FROM debian:bookworm-slim AS runtime
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
