#!/bin/sh
# Build deploy/Dockerfile with podman from a Debian base made by debootstrap (no registry needed), then
# run the image on loopback: a reward service container answering health checks, and the embedded
# default trained for 2 steps (`grpo train --max-steps 2`: the learner starts its reward and rollout
# services from the same image's console scripts, each its own process on a loopback port).
# Not part of `uv run pytest` (minutes of CPU and a few GB of disk). Run as root from the repository:
#   sh deploy/smoke.sh
# Settings (environment): BASE (default localhost/debian-base:bookworm, made by debootstrap if absent),
# UV_IMAGE (default localhost/uv:<the host's uv version>, made from the host's uv binary if absent),
# IMAGE (localhost/grpo:smoke), WORK (where the base root and the build context go; /tmp/grpo-smoke),
# UV_CACHE (a uv cache mounted into the build so the locked wheels need no download; `uv cache dir`).
# The podman options are the ones these machines need (/work/shared/containers.md): runc, cgroupfs and
# explicit rlimits; builds see the host's apt, pip and certificate configuration read-only, nothing
# is copied in.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/grpo-smoke}
BASE=${BASE:-localhost/debian-base:bookworm}
UV_VERSION=$(uv --version | cut -d' ' -f2)
UV_IMAGE=${UV_IMAGE:-localhost/uv:$UV_VERSION}
IMAGE=${IMAGE:-localhost/grpo:smoke}
UV_CACHE=${UV_CACHE:-$(uv cache dir)}
PODMAN="podman --runtime runc --cgroup-manager=cgroupfs"
LIMITS="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096"  # at most the hard limits here
REWARD_PORT=${REWARD_PORT:-50953}
mkdir -p "$WORK"

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

if ! $PODMAN image exists "$BASE"; then
    step "base image $BASE from debootstrap (Debian bookworm, minbase)"
    [ -d "$WORK/rootfs/usr" ] || debootstrap --variant=minbase bookworm "$WORK/rootfs"
    tar -C "$WORK/rootfs" -c . | $PODMAN import - "$BASE"
fi

if ! $PODMAN image exists "$UV_IMAGE"; then
    step "uv image $UV_IMAGE from this machine's uv $UV_VERSION (the Dockerfile copies /uv from it)"
    binary=$( (pyenv which uv 2>/dev/null) || command -v uv)  # a pyenv shim is a script: take its target
    mkdir -p "$WORK/uv" && cp "$binary" "$WORK/uv/uv"
    tar -C "$WORK/uv" -c uv | $PODMAN import - "$UV_IMAGE"
fi

step "build context: the files git tracks (what a clone has), with this working tree's contents"
rm -rf "$WORK/context" && mkdir -p "$WORK/context"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -c) | tar -x -C "$WORK/context"

step "build $IMAGE"
# shellcheck disable=SC2086
$PODMAN build --network host $LIMITS \
    -v /etc/apt/apt.conf.d:/etc/apt/apt.conf.d:ro -v /etc/pip.conf:/etc/pip.conf:ro \
    -v /etc/ssl/certs:/etc/ssl/certs:ro -v "$UV_CACHE":/root/.cache/uv \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg UV_IMAGE="$UV_IMAGE" --build-arg UV_SYSTEM_CERTS=true \
    -t "$IMAGE" -f "$WORK/context/deploy/Dockerfile" "$WORK/context"

step "a reward service from the image, on loopback port $REWARD_PORT, and its health probe"
# shellcheck disable=SC2086
$PODMAN run -d --rm --name grpo-smoke-reward --network host $LIMITS "$IMAGE" \
    grpo-reward serve --host 127.0.0.1 --port "$REWARD_PORT" --workers 1
trap '$PODMAN stop -t 10 grpo-smoke-reward >/dev/null 2>&1 || true' EXIT
tries=0
# shellcheck disable=SC2086
until $PODMAN exec grpo-smoke-reward python /app/deploy/grpc_health_probe.py \
        --address "127.0.0.1:$REWARD_PORT" --service grpo.v1.RewardService; do
    tries=$((tries + 1))
    [ "$tries" -lt 120 ] || { $PODMAN logs grpo-smoke-reward; echo "smoke: the reward service never became healthy" >&2; exit 1; }
    sleep 1
done
echo "smoke: reward service healthy"

step "the embedded default, 2 steps: learner + reward + rollout services from the image, on loopback"
rm -rf "$WORK/runs/embedded"  # a fresh run: an old run directory's warm-up and checkpoints would be reused
mkdir -p "$WORK/runs" && chmod 0777 "$WORK/runs"
# shellcheck disable=SC2086
$PODMAN run --rm --network host $LIMITS -v "$WORK/runs":/runs -w /runs "$IMAGE" \
    grpo train --max-steps 2 --no-progress --run-dir /runs/embedded
# the last metrics line is GRPO step 2 (step 0 is the evaluation before training)
last=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["step"])' \
    "$WORK/runs/embedded/metrics.jsonl")
[ "$last" = 2 ] || { echo "smoke: the run ended at step $last, not 2" >&2; exit 1; }
echo "smoke: OK: the image trained 2 GRPO steps; metrics in $WORK/runs/embedded/metrics.jsonl"
