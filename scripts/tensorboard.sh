#!/usr/bin/env bash
# Serve TensorBoard for a swiniqa experiment on 127.0.0.1 (local dir, s3://, gs:// or a path on
# the cluster's head node). Run with --help for usage.
set -euo pipefail

PROG=tensorboard.sh

usage() {
    cat <<EOF
Usage: scripts/$PROG [EXPERIMENT_URI_OR_DIR] [options] [-- extra tensorboard args]

  EXPERIMENT_URI_OR_DIR  local directory (default: runs), s3://bucket/prefix/<experiment>,
                         gs://bucket/prefix/<experiment>, or with --cluster a path on the
                         head node (e.g. /data/runs/<experiment>)
Options:
  --port P          local TensorBoard port (default: 6006)
  --cluster FILE    fetch the path from the cluster's head with 'ray rsync-down FILE'
  --cache DIR       where remote event files are synced to
                    (default: \${SWINIQA_TB_CACHE:-\${XDG_CACHE_HOME:-~/.cache}/swiniqa/tensorboard})
  --dry-run         print the commands (prefixed with '+ ') and run nothing
  -h, --help        show this help

Remote experiments are synced first (s3: 'aws s3 sync', gs: 'gsutil -m rsync -r', only the
TensorBoard event files; cluster: 'ray rsync-down', everything under the path). Rerun to refresh.
TensorBoard always binds to 127.0.0.1; use an SSH tunnel if you need it elsewhere.
Exit status: 0 ok, 2 usage error, other = a failed command.
EOF
}

die_usage() { echo "$PROG: $*" >&2; exit 2; }
die() { echo "$PROG: $*" >&2; exit 1; }

fmt() {
    local out="" a
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=" $a"; else out+=" $(printf '%q' "$a")"; fi
    done
    printf '%s' "${out# }"
}

target="" port=6006 cluster="" dry_run=0
cache="${SWINIQA_TB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/swiniqa/tensorboard}"
extra=()
while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --port) (($# >= 2)) || die_usage "--port needs a number"; port="$2"; shift 2 ;;
        --port=*) port="${1#*=}"; shift ;;
        --cluster) (($# >= 2)) || die_usage "--cluster needs a file"; cluster="$2"; shift 2 ;;
        --cluster=*) cluster="${1#*=}"; shift ;;
        --cache) (($# >= 2)) || die_usage "--cache needs a directory"; cache="$2"; shift 2 ;;
        --cache=*) cache="${1#*=}"; shift ;;
        --dry-run) dry_run=1; shift ;;
        --) shift; extra+=("$@"); break ;;
        -*) die_usage "unknown option '$1' (tensorboard options go after '--'); see --help" ;;
        *) [[ -z "$target" ]] || die_usage "more than one experiment given: '$target' and '$1'"; target="$1"; shift ;;
    esac
done
target="${target:-runs}"
for a in ${extra[@]+"${extra[@]}"}; do
    case "$a" in --host|--host=*|--bind_all) die_usage "'$a' is not allowed: TensorBoard stays on 127.0.0.1" ;; esac
done
[[ "$port" =~ ^[1-9][0-9]*$ ]] || die_usage "--port must be a port number, got '$port'"

run() {
    if ((dry_run)); then echo "+ $(fmt "$@")"; return 0; fi
    echo "+ $(fmt "$@")" >&2
    "$@"
}
need() { ((dry_run)) || command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"; }

# <cache>/<scheme>/<bucket/prefix...>: one directory per source, reused by later syncs.
cache_dir_for() {
    local p="${1#*://}"
    while [[ "$p" == /* ]]; do p="${p#/}"; done
    echo "$cache/$2/${p%/}"
}

if [[ -n "$cluster" ]]; then
    [[ "$target" != *://* ]] || die_usage "--cluster takes a path on the head node, not '$target'"
    [[ -f "$cluster" ]] || die_usage "cluster config not found: $cluster"
    [[ "$target" == /* || "$target" == "~"* ]] || die_usage "with --cluster give an absolute path on the head node, got '$target'"
    need ray 'pip install "ray[default]==2.60.0" boto3'
    name="$(sed -n 's/^cluster_name:[[:space:]]*\([^#[:space:]]*\).*/\1/p' "$cluster" | head -n1)"
    logdir="$(cache_dir_for "${target#\~}" "cluster/${name:-default}")"
    run mkdir -p "$logdir"
    run ray rsync-down "$cluster" "${target%/}/" "$logdir/"
elif [[ "$target" == s3://* ]]; then
    need aws "install the AWS CLI (credentials from your environment/profile)"
    logdir="$(cache_dir_for "$target" s3)"
    run mkdir -p "$logdir"
    run aws s3 sync "$target" "$logdir" --exclude '*' --include '*tfevents*'
elif [[ "$target" == gs://* ]]; then
    need gsutil "install the Google Cloud SDK"
    logdir="$(cache_dir_for "$target" gs)"
    run mkdir -p "$logdir"
    run gsutil -m rsync -r -x '^(?!.*tfevents).*$' "$target" "$logdir"
elif [[ "$target" == *://* ]]; then
    die_usage "unsupported URI '$target' (use a local dir, s3:// or gs://)"
else
    if [[ ! -d "$target" ]]; then
        ((dry_run)) || die_usage "no such directory: $target"
        echo "$PROG: warning: no such directory: $target" >&2
    fi
    logdir="$target"
fi

need tensorboard "pip install tensorboard"
((dry_run)) || echo "TensorBoard for $target: http://127.0.0.1:$port/ (Ctrl-C to stop)" >&2
run tensorboard --logdir "$logdir" --host 127.0.0.1 --port "$port" ${extra[@]+"${extra[@]}"}
