#!/usr/bin/env bash
# Launch a SMART-IQA study sweep on a Ray cluster (cluster launcher + Ray Jobs).
# Run with --help for usage; docs/cluster.md walks through the whole workflow.
set -euo pipefail

PROG=launch_sweep.sh
STUDIES="lr size ablation augment"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    cat <<EOF
Usage: scripts/$PROG STUDY [options] [--] [extra args for 'swiniqa tune']

Start (or update) the Ray cluster, port-forward its dashboard to 127.0.0.1 and submit
'swiniqa tune STUDY --preset paper --seeds K --output URI ...' as a Ray job (no wait).

STUDY                one of: ${STUDIES// /, }
Options:
  --cluster FILE     cluster launcher config (default: $REPO/cluster.yaml)
  --seeds K          seeds per grid cell (default: 3)
  --output URI       shared storage for results, reachable from every node
                     (default: \${SWINIQA_STORAGE:-s3://CHANGE-ME-bucket/swiniqa})
  --port P           local port for the dashboard port-forward (default: 8265)
  --no-up            skip 'ray up' (cluster already running)
  --dry-run          print the commands (prefixed with '+ ') and run nothing
  -h, --help         show this help
Any other argument (or everything after '--') is passed on to 'swiniqa tune', e.g. --resume.

The dashboard / job API is only reached through 'ray dashboard' (SSH tunnel, bound to
127.0.0.1); never open port 8265 in the security group.
Token auth: export RAY_AUTH_MODE=token and keep the cluster's token in ~/.ray/auth_token
(or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH); it is passed on to 'ray job submit'.
Exit status: 0 ok, 2 usage error, other = a failed command.
EOF
}

die_usage() { echo "$PROG: $*" >&2; exit 2; }
die() { echo "$PROG: $*" >&2; exit 1; }

# Quote an argument only when needed, for readable '+ ' lines.
fmt() {
    local out="" a
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=" $a"; else out+=" $(printf '%q' "$a")"; fi
    done
    printf '%s' "${out# }"
}

study="" cluster="" seeds=3 output="${SWINIQA_STORAGE:-s3://CHANGE-ME-bucket/swiniqa}"
port=8265 dry_run=0 do_up=1
extra=()
while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --cluster) (($# >= 2)) || die_usage "--cluster needs a file"; cluster="$2"; shift 2 ;;
        --cluster=*) cluster="${1#*=}"; shift ;;
        --seeds) (($# >= 2)) || die_usage "--seeds needs a number"; seeds="$2"; shift 2 ;;
        --seeds=*) seeds="${1#*=}"; shift ;;
        --output) (($# >= 2)) || die_usage "--output needs a URI"; output="$2"; shift 2 ;;
        --output=*) output="${1#*=}"; shift ;;
        --port) (($# >= 2)) || die_usage "--port needs a number"; port="$2"; shift 2 ;;
        --port=*) port="${1#*=}"; shift ;;
        --dry-run) dry_run=1; shift ;;
        --no-up) do_up=0; shift ;;
        --) shift; extra+=("$@"); break ;;
        -*) extra+=("$1"); shift ;;
        *) if [[ -z "$study" ]]; then study="$1"; else extra+=("$1"); fi; shift ;;
    esac
done

[[ -n "$study" ]] || die_usage "missing STUDY (one of: ${STUDIES// /, }); see --help"
[[ " $STUDIES " == *" $study "* ]] || die_usage "unknown study '$study' (valid: ${STUDIES// /, })"
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || die_usage "--seeds must be a positive integer, got '$seeds'"
[[ "$port" =~ ^[1-9][0-9]*$ ]] || die_usage "--port must be a port number, got '$port'"
[[ -n "$output" ]] || die_usage "--output is empty"

# Resolve the cluster file against the caller's cwd, then work from the repo root
# (cluster.yaml mounts "." and the job uploads --working-dir .).
cluster="${cluster:-$REPO/cluster.yaml}"
[[ -f "$cluster" ]] || die_usage "cluster config not found: $cluster"
cluster="$(cd "$(dirname "$cluster")" && pwd)/$(basename "$cluster")"
cluster_arg="${cluster#"$REPO"/}"

if [[ "$output" == *CHANGE-ME* ]] && ((!dry_run)); then
    die_usage "--output '$output' is a placeholder: pass --output s3://your-bucket/prefix or export SWINIQA_STORAGE"
fi
if [[ "$output" != *://* && "$output" != /* ]]; then
    echo "$PROG: warning: '$output' is a relative path on the head node; use s3://, gs:// or a shared mount such as /data/..." >&2
fi

# Token auth: only RAY_AUTH_MODE is passed on explicitly; the token is found by Ray itself.
auth_env=()
if [[ "${RAY_AUTH_MODE:-}" == token ]]; then
    auth_env=(RAY_AUTH_MODE=token)
    if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ]]; then
        msg="RAY_AUTH_MODE=token but no token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
        if ((dry_run)); then echo "$PROG: warning: $msg" >&2; else die_usage "$msg"; fi
    fi
fi
if [[ -n "${RAY_API_SERVER_ADDRESS:-}" ]]; then
    # 'ray job' prefers it over RAY_ADDRESS: it would send the job somewhere else.
    echo "$PROG: note: ignoring RAY_API_SERVER_ADDRESS=$RAY_API_SERVER_ADDRESS" >&2
    unset RAY_API_SERVER_ADDRESS
fi

if ((!dry_run)) && ! command -v ray >/dev/null 2>&1; then
    die "'ray' not found: pip install \"ray[default]==2.60.0\" boto3"
fi

# run CMD...: leading VAR=value words become the command's environment.
run() {
    if ((dry_run)); then echo "+ $(fmt "$@")"; return 0; fi
    echo "+ $(fmt "$@")" >&2
    env "$@"
}

address="http://127.0.0.1:$port"
cluster_name="$(sed -n 's/^cluster_name:[[:space:]]*\([^#[:space:]]*\).*/\1/p' "$cluster" | head -n1)"
state="${TMPDIR:-/tmp}/swiniqa-dashboard-${cluster_name:-default}-$port"
submission_id="swiniqa-$study-$(date -u +%Y%m%d-%H%M%S)"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ((dry_run)); then echo "+ $(fmt cd "$REPO")"; else echo "+ $(fmt cd "$REPO")" >&2; fi
cd "$REPO"

if ((do_up)); then
    run ray up -y "$cluster_arg"
fi

# Dashboard port-forward (ssh -L, local side bound to localhost), kept running after we exit
# so that 'ray job logs -f' works. Reused if our own forward for this cluster is still alive.
fwd_pid=""
if [[ -f "$state.pid" ]] && kill -0 "$(cat "$state.pid")" 2>/dev/null && port_open "$port"; then
    fwd_pid="$(cat "$state.pid")"
    echo "$PROG: reusing dashboard port-forward (pid $fwd_pid) on 127.0.0.1:$port" >&2
elif port_open "$port" && ((!dry_run)); then
    die_usage "127.0.0.1:$port is already in use (a local Ray dashboard or another tunnel?): stop it or pass --port"
elif ((dry_run)); then
    port_open "$port" && echo "$PROG: warning: 127.0.0.1:$port is in use; a real run would stop here (use --port)" >&2
    echo "+ $(fmt ray dashboard --port "$port" "$cluster_arg") > $(fmt "$state.log") 2>&1 &"
else
    echo "+ $(fmt ray dashboard --port "$port" "$cluster_arg") > $(fmt "$state.log") 2>&1 &" >&2
    nohup ray dashboard --port "$port" "$cluster_arg" >"$state.log" 2>&1 </dev/null &
    fwd_pid=$!
    echo "$fwd_pid" >"$state.pid"
    for _ in $(seq 1 90); do
        port_open "$port" && break
        kill -0 "$fwd_pid" 2>/dev/null || { tail -n 20 "$state.log" >&2; die "ray dashboard exited (log: $state.log)"; }
        sleep 1
    done
    port_open "$port" || die "no dashboard on 127.0.0.1:$port after 90 s (log: $state.log; pid $fwd_pid still running)"
fi

run ${auth_env[@]+"${auth_env[@]}"} "RAY_ADDRESS=$address" ray job submit --address "$address" \
    --submission-id "$submission_id" --working-dir . --no-wait \
    -- swiniqa tune "$study" --preset paper --seeds "$seeds" --output "$output" ${extra[@]+"${extra[@]}"}

if ((dry_run)); then
    echo "$PROG: dry run, nothing was executed" >&2
    exit 0
fi

pfx="$(fmt ${auth_env[@]+"${auth_env[@]}"} "RAY_ADDRESS=$address")"
cat <<EOF

Submitted job $submission_id (study '$study', $seeds seed(s), results under $output).
  follow logs : $pfx ray job logs -f $submission_id
  status      : $pfx ray job status $submission_id
  stop        : $pfx ray job stop $submission_id
  TensorBoard : scripts/tensorboard.sh $output/<experiment>
  best model  : swiniqa pull $output/<experiment> --dest best/
  resume      : scripts/$PROG $study --no-up --seeds $seeds --output $output --resume
  tunnel      : dashboard at $address (pid ${fwd_pid}; 'kill $fwd_pid' closes it, 'ray dashboard $cluster_arg' reopens it)
  tear down   : ray down -y $cluster_arg   (the head keeps billing until then)
EOF
