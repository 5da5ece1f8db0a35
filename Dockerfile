# ari-recorder: built on Debian bookworm, run on bookworm-slim as an unprivileged user
# (uid 10001, group 10001: the group docker-compose.yml shares with Asterisk for the recordings).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libopus-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/ari-recorder

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libopus0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ari-recorder \
    && useradd --system --uid 10001 --gid 10001 --home /var/lib/ari-recorder ari-recorder \
    && mkdir -p /var/lib/ari-recorder /var/lib/ari-recorder-audit \
    && chown ari-recorder /var/lib/ari-recorder /var/lib/ari-recorder-audit
COPY --from=build /src/target/release/ari-recorder /usr/local/bin/ari-recorder
USER ari-recorder
EXPOSE 8080
HEALTHCHECK CMD ["/usr/local/bin/ari-recorder", "check"]
ENTRYPOINT ["/usr/local/bin/ari-recorder"]
CMD ["serve"]
