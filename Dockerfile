# One image builds every service binary; compose picks the binary per service.
# Base images are pinned in .env (compose passes them as build args).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and compiled dependencies between
# builds, so a code change rebuilds our crates only. SQLX_OFFLINE (from
# .cargo/config.toml) means no database is needed to compile.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin orders --bin inventory --bin reporting --bin notification --bin relay --bin ticketctl \
 && mkdir -p /out \
 && cp target/release/orders target/release/inventory target/release/reporting target/release/notification \
       target/release/relay target/release/ticketctl /out/

FROM ${RUNTIME_IMAGE}
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /out/ /usr/local/bin/
USER app
ENV LOG_FORMAT=json
