# syntax=docker/dockerfile:1
# composer in a container: `composer serve` and `composer worker` from one
# image (compose.yaml, docs/operating.md).

# The builder is pinned to the same Debian release as the runtime image, so
# the binary links against the glibc it will run with.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Caches keep the crate registry and the target folder between builds; the
# binary is copied out because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p composer \
 && cp target/release/composer /usr/local/bin/composer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# An unprivileged user. /var/lib/composer is where compose mounts the shared
# data volume (a new volume takes this ownership); /var/cache/composer holds
# compiled plugin code, per container.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/composer composer \
 && install -d -o composer -g composer /var/lib/composer /var/cache/composer
COPY --from=build /usr/local/bin/composer /usr/local/bin/composer
USER composer
WORKDIR /home/composer
EXPOSE 8080
CMD ["composer", "--help"]
