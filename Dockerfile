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
#
# The touch: COPY keeps the files' modification times, and cargo decides
# what to rebuild by comparing them with the cached build's. A file edited
# while an earlier build was running is older than that build's output and
# would be skipped; touching our sources makes every image build compile our
# crates (dependencies stay cached).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find services shared tools tests -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin orders --bin inventory --bin reporting --bin notification --bin relay --bin ticketctl \
 && mkdir -p /out \
 && cp target/release/orders target/release/inventory target/release/reporting target/release/notification \
       target/release/relay target/release/ticketctl /out/

FROM ${RUNTIME_IMAGE}
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app \
 # The mount point of compose's auth-keys volume: a new named volume takes
 # this directory's owner, so keygen, running as app, can write its keys.
 && mkdir /keys && chown app:app /keys
COPY --from=build /out/ /usr/local/bin/
USER app
ENV LOG_FORMAT=json
