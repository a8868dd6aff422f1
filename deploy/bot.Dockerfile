# The Karpa validator: `karpa serve` (webhooks, queue, workers) and, with another
# command, `karpa runner` (workers only, e.g. on a GPU host). A judge builds each
# PR's recipe offline and runs it under bubblewrap, so the image carries the Rust
# toolchain, libtorch (pip's torch wheel, CUDA included), vendored crates and
# bubblewrap; the bot itself is built in a separate stage.
#
#   docker build -f deploy/bot.Dockerfile -t karpa-bot .
#   docker run -p 8080:8080 -e KARPA_DATABASE_URL=... karpa-bot serve --listen 0.0.0.0:8080 ...

FROM rust:1.95.0-slim-bookworm AS toolchain
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/karpa
COPY . .
RUN python3 -m venv .venv \
    && .venv/bin/pip install torch==2.11.0 \
    && mkdir -p .karpa \
    && ln -s "$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" .karpa/libtorch \
    && cargo vendor --locked /opt/karpa/vendor >> "$CARGO_HOME/config.toml"

FROM toolchain AS build
RUN cargo build --release --locked --offline --bin karpa

FROM toolchain
COPY --from=build /opt/karpa/target/release/karpa /usr/local/bin/karpa
ENV LIBTORCH=/opt/karpa/.karpa/libtorch
# State (mirrors, bundles) and the shared recipe build folder live on volumes.
VOLUME ["/var/lib/karpa"]
WORKDIR /var/lib/karpa
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"]
ENTRYPOINT ["karpa"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--state-dir", "/var/lib/karpa/state", "--target-dir", "/var/lib/karpa/recipes"]
