# Common tasks; every recipe goes through ./harness (which sets up .venv on first use).
# `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# the project's own tests (what CI runs)
default: test

# run the project's own tests (pytest options after the recipe name)
test *ARGS:
    ./harness test {{ARGS}}

# install podman & co. (root, apt), pre-build the offline base images, run the tests
provision *ARGS:
    ./harness test --provision {{ARGS}}

# all harness tiers on the built-in sample or your image (--ext-image/--ext-artifacts ...)
check *ARGS:
    ./harness check {{ARGS}}

# layout tier: files, binaries, control files, labels (no engine needed)
layout *ARGS:
    ./harness check -m layout {{ARGS}}

# sql tier: the extension in real PostgreSQL 18
sql *ARGS:
    ./harness check -m sql {{ARGS}}

# cnpg tier on kind (Docker + kind); e.g. `just cnpg --kind-node-image kindest/node:v1.33.1`
cnpg *ARGS:
    ./harness check -m cnpg {{ARGS}}

# cnpg tier on a node without ImageVolume: must take the composite fallback
cnpg-fallback *ARGS:
    EXTHARNESS_EXPECT_CNPG_PATH=fallback-composite ./harness check -m cnpg --kind-node-image kindest/node:v1.32.5 {{ARGS}}

# the harness's unit tests only
unit *ARGS:
    ./harness test -m unit {{ARGS}}

# ruff lint and format check
lint:
    ./harness setup
    .venv/bin/ruff check src tests benchmarks
    .venv/bin/ruff format --check src tests benchmarks

# validate the GitHub workflow files against their schema (offline)
workflows:
    ./harness setup
    .venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# build the extension image from a release folder (dist/artifact/{lib,extension})
image VERSION="dev" TAG="ghcr.io/OWNER/pg_trickle-ext":
    docker build -f cnpg/Dockerfile.ext --build-arg VERSION={{VERSION}} -t {{TAG}}:{{VERSION}} dist/

# delete kind clusters a killed run left behind (only the harness's extharness-* ones)
clean-clusters:
    kind get clusters | grep '^extharness-' | xargs -r -n1 kind delete cluster --name

# remove test outputs
clean:
    rm -rf extharness-artifacts .pytest_cache .hypothesis
