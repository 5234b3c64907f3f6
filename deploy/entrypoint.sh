#!/bin/sh
# One image, three services: the first argument names the console script to run.
#   docker run IMAGE grpo-reward serve --host 0.0.0.0 ...
#   docker run IMAGE grpo-rollout serve --host 0.0.0.0 ...
#   docker run IMAGE grpo train --config /config/learner.toml ...
# `exec` makes the service PID 1's direct replacement so it receives SIGTERM and drains.
set -eu
case "${1:-}" in
    grpo-reward|grpo-rollout|grpo)
        exec "$@"
        ;;
    *)
        echo "usage: IMAGE grpo-reward|grpo-rollout|grpo ARGS... (got '${1:-}')" >&2
        exit 64
        ;;
esac
