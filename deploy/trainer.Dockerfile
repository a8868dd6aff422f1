# The official Karpa trainer image: `karpa prove` with everything it needs to build
# a patched recipe offline and train it on one GPU.
#
#   docker build -f deploy/trainer.Dockerfile -t karpa-trainer .
#   docker run --gpus 1 -v "$PWD:/work" karpa-trainer \
#     --repo /work --patch my.diff --config proxy --data /work/data/proxy/public \
#     --hotkey /work/hotkey.json --github-login me --rationale why.md --out bundle
#
# libtorch comes from pip's torch wheel (the one tch 0.24 links; it carries its own
# CUDA libraries), so the base only needs a Rust toolchain and Python. Crates are
# vendored at build time: training never touches the network.

FROM rust:1.95.0-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Debian bookworm's own python3 (3.11) and git; the release pins their versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/karpa
COPY . .

# torch==2.11.0 into a venv, linked where .cargo/config.toml looks for libtorch.
RUN python3 -m venv .venv \
    && .venv/bin/pip install torch==2.11.0 \
    && mkdir -p .karpa \
    && ln -s "$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" .karpa/libtorch

# Vendor every crate of Cargo.lock and make cargo use them everywhere (patched
# worktrees are built in temporary folders), then build the CLI offline.
RUN cargo vendor --locked /opt/karpa/vendor >> "$CARGO_HOME/config.toml" \
    && cargo build --release --locked --offline --bin karpa \
    && install -m 0755 target/release/karpa /usr/local/bin/karpa

ENV LIBTORCH=/opt/karpa/.karpa/libtorch
WORKDIR /work
ENTRYPOINT ["karpa", "prove", "--target-dir", "/opt/karpa/target/recipes"]
