#!/usr/bin/env bash
# One entry point for every Agent33 process: the first argument is the role.
# The roles mirror the Procfile one to one (`migrate` is the Procfile's `release`);
# any further arguments are appended to the role's command.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: entrypoint.sh ROLE [ARGS...]

roles:
  web          gunicorn web.wsgi:app (runs `agent33 db upgrade` first unless SKIP_MIGRATIONS=1)
  worker       celery worker for the steps, io and maintenance queues
  worker-llm   celery worker for the llm queue
  worker-gpu   celery worker for the llm.gpu queue (GPU_CONCURRENCY, default 1)
  beat         celery beat, schedule file under AGENT33_VAR_DIR
  flower       agent33 flower: Flower behind basic auth (AGENT33_FLOWER_USER/_PASSWORD;
               FLOWER_ADDRESS, default 127.0.0.1; FLOWER_PORT, default 5555)
  migrate      agent33 db upgrade (alias: release)
  shell        run ARGS as a command, or bash when none are given
EOF
}

if [[ $# -eq 0 ]]; then
    role=web
else
    role=$1
    shift
fi

var_dir=${AGENT33_VAR_DIR:-var}

case "$role" in
    web)
        if [[ "${SKIP_MIGRATIONS:-0}" != "1" ]]; then
            agent33 db upgrade
        fi
        exec gunicorn web.wsgi:app \
            --config python:web.gunicorn_conf \
            --bind "0.0.0.0:${API_PORT:-8033}" \
            --workers "${WEB_CONCURRENCY:-2}" \
            --worker-class gthread \
            --threads "${WEB_THREADS:-32}" \
            --max-requests 1000 \
            --max-requests-jitter 100 \
            --timeout 30 \
            "$@"
        ;;
    worker)
        exec celery -A tasks worker -Q steps,io,maintenance -n 'worker@%h' --loglevel INFO "$@"
        ;;
    worker-llm)
        exec celery -A tasks worker -Q llm -n 'llm@%h' "$@"
        ;;
    worker-gpu)
        exec celery -A tasks worker -Q llm.gpu -n 'gpu@%h' \
            --concurrency "${GPU_CONCURRENCY:-1}" "$@"
        ;;
    beat)
        mkdir -p "$var_dir"
        exec celery -A tasks beat --schedule "$var_dir/celerybeat-schedule" "$@"
        ;;
    flower)
        # Basic auth from AGENT33_FLOWER_USER/_PASSWORD; refused in production without them.
        exec agent33 flower \
            --address="${FLOWER_ADDRESS:-127.0.0.1}" \
            --port="${FLOWER_PORT:-5555}" \
            "$@"
        ;;
    migrate|release)
        exec agent33 db upgrade "$@"
        ;;
    shell)
        if [[ $# -eq 0 ]]; then
            exec bash
        fi
        exec "$@"
        ;;
    -h|--help|help)
        usage
        exit 0
        ;;
    *)
        echo "entrypoint.sh: unknown role '$role'" >&2
        usage
        exit 64
        ;;
esac
