#!/usr/bin/env bash
# The control-plane demo (`make demo`): start a cluster manager with its state under var/demo,
# then drive it with the tashi client the way an administrator and two users would.
#
#   scripts/demo.sh         start a fresh demo cluster manager (stopping an earlier one) and run
#   scripts/demo.sh stop    stop the cluster manager an earlier run left running
#
# TASHI_DEMO_DIR (default var/demo) and TASHI_DEMO_BIN (default .venv/bin) let the test suite run
# it without touching a developer's demo.
#
# There is no node manager yet, so instances stay Pending: this shows the control plane only.
# The cluster manager is left running at the end; the script prints how to use and stop it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
BIN="${TASHI_DEMO_BIN:-$ROOT/.venv/bin}"
DEMO="${TASHI_DEMO_DIR:-$ROOT/var/demo}"
PIDFILE="$DEMO/cm.pid"
LOG="$DEMO/cm.log"
CONFIG="$DEMO/demo.cfg"
CREDS="$DEMO/state/admin-credentials.cfg"
IMAGE=tiny.qcow2
START_TIMEOUT="${TASHI_DEMO_TIMEOUT:-30}"

# Nothing from the caller's environment may change who the client is or where it goes.
unset TASHI_CONFIG TASHI_CM_HOST TASHI_CM_PORT TASHI_USER TASHI_PASSWORD TASHI_TOKEN

say() { printf '%s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

SUMMARY=()
declare -A PASSWORDS
phase() {  # phase TITLE COMMAND...: run one step, and say how long it took
    local title="$1" start end micros took
    shift
    printf '\n==> %s\n' "$title"
    start="${EPOCHREALTIME//[!0-9]/}"
    "$@"
    end="${EPOCHREALTIME//[!0-9]/}"
    micros=$((end - start))
    printf -v took '%d.%03d s' $((micros / 1000000)) $((micros / 1000 % 1000))
    printf '    (%s)\n' "$took"
    SUMMARY+=("$(printf '%10s  %s' "$took" "$title")")
}

# --- the cluster manager process --------------------------------------------------------------

pid_alive() {  # pid_alive PID: that pid exists and is not a zombie
    local pid="$1" state
    [[ -r "/proc/$pid/stat" ]] || return 1
    state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

is_our_cm() {  # is_our_cm PID: that pid is alive, not a zombie, and runs tashi-cm
    pid_alive "$1" && grep -qa 'tashi-cm' "/proc/$1/cmdline"
}

stop_cm() {
    [[ -f "$PIDFILE" ]] || { say "no demo cluster manager is running"; return 0; }
    local pid waited=0
    pid="$(cat "$PIDFILE")"
    if is_our_cm "$pid"; then
        say "stopping the demo cluster manager (pid $pid)"
        kill "$pid"
        # Until the process is gone, not only its command line: an exiting process's cmdline
        # reads empty before it has finished dying.
        while pid_alive "$pid"; do
            if ((waited == 100)); then
                say "pid $pid did not stop within 10 s of SIGTERM; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            elif ((waited >= 200)); then
                say "pid $pid is still there 10 s after SIGKILL"
                return 1
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
    else
        say "the demo cluster manager (pid $pid) is not running any more"
    fi
    rm -f "$PIDFILE"
}

free_port() {
    "$BIN/python" -c 'from tashi.runtime.ports import free_port; print(free_port())'
}

write_config() {
    PORT="$(free_port)"
    mkdir -p "$DEMO/state" "$DEMO/vfs/images"
    cat >"$CONFIG" <<EOF
# Written by scripts/demo.sh: a cluster manager whose state lives in $DEMO.
[ClusterManager]
stateDir = $DEMO/state

[ClusterManagerService]
host = 127.0.0.1
port = $PORT

[Vfs]
prefix = $DEMO/vfs
EOF
    say "config $CONFIG: port $PORT, state $DEMO/state, image store $DEMO/vfs/images"
}

start_cm() {
    # setsid: the cluster manager outlives this script and a Ctrl-C typed into its terminal.
    TASHI_CONFIG="$CONFIG" setsid "$BIN/tashi-cm" </dev/null >"$LOG" 2>&1 &
    CM_PID=$!
    echo "$CM_PID" >"$PIDFILE"
    say "tashi-cm started, pid $CM_PID (pid file $PIDFILE, log $LOG)"
}

wait_healthy() {  # poll GET /health until it answers 200, the process dies, or time runs out
    "$BIN/python" - "http://127.0.0.1:$PORT/health" "$CM_PID" "$START_TIMEOUT" <<'EOF'
import sys, time, urllib.request
from pathlib import Path

url, pid, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + timeout
last = "no answer yet"
while time.monotonic() < deadline:
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
        sys.exit(f"demo: error: tashi-cm (pid {pid}) exited before {url} answered")
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            print(f"{url}: {answer.status} {answer.read().decode()}")
            sys.exit(0)
    except OSError as exc:
        last = str(exc)
    time.sleep(0.1)
sys.exit(f"demo: error: {url} did not answer within {timeout:g} s (last: {last})")
EOF
    [[ -f "$CREDS" ]] || die "the first start wrote no admin credentials to $CREDS"
    say "admin credentials: $CREDS (mode $(stat -c %a "$CREDS"))"
}

fresh_state() {
    # Clear only what an earlier demo made: never a directory someone pointed us at by mistake.
    if [[ -e "$DEMO" && ! -f "$DEMO/demo.cfg" && -n "$(ls -A "$DEMO")" ]]; then
        die "refusing to clear $DEMO: it is not empty and holds no demo.cfg"
    fi
    stop_cm
    rm -rf "$DEMO"
    mkdir -p "$DEMO"
    say "demo directory: $DEMO"
}

start_and_wait() {
    start_cm
    wait_healthy
}

on_exit() {
    local status=$?
    if ((status != 0)) && [[ -n "${CM_PID:-}" ]]; then
        printf '\ndemo: failed; the last lines of %s:\n' "$LOG" >&2
        tail -n 20 "$LOG" >&2 || true
        stop_cm >&2
    fi
}

# --- the client -------------------------------------------------------------------------------

tashi_as_admin() { TASHI_CONFIG="$CREDS" "$BIN/tashi" "$@"; }

tashi_as() {  # tashi_as USER VERB ARGS...
    local user="$1"
    shift
    TASHI_USER="$user" TASHI_PASSWORD="${PASSWORDS[$user]}" "$BIN/tashi" "$@"
}

create_network() {
    if tashi_as_admin getNetworks --json | "$BIN/python" -c \
        'import json, sys; sys.exit(0 if any(n["id"] == 1 for n in json.load(sys.stdin)) else 1)'
    then
        say "network 1 exists already"
    else
        tashi_as_admin addNetwork --id 1 --name default
    fi
    tashi_as_admin addNetwork --id 2 --name lab
}

create_users() {
    local user
    for user in alice bob; do
        PASSWORDS[$user]="$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(12))')"
    done
    tashi_as_admin registerUser --name alice --passwd "${PASSWORDS[alice]}" --priority 5
    tashi_as_admin registerUser --name bob --passwd "${PASSWORDS[bob]}" --priority 1
    printf 'alice = %s\nbob = %s\n' "${PASSWORDS[alice]}" "${PASSWORDS[bob]}" >"$DEMO/passwords"
    chmod 600 "$DEMO/passwords"
    say "their passwords are in $DEMO/passwords"
}

create_image() {
    local path="$DEMO/vfs/images/$IMAGE"
    if command -v qemu-img >/dev/null; then
        qemu-img create -q -f qcow2 "$path" 64M
    else
        truncate -s 64M "$path"
    fi
    say "image store: $path ($(du -h "$path" | cut -f1) on disk)"
}

add_host() { tashi_as_admin addHost --host demo-host-1; }

create_instances() {
    tashi_as alice createVm --name alice-vm --cores 1 --memory 128 --disks "$IMAGE"
    tashi_as bob createMany --basename web --count 3 --cores 1 --memory 256 --disks "$IMAGE"
}

show_security() {
    local answer
    if answer="$(tashi_as alice registerUser --name mallory --passwd 'mallory-pw-1' 2>&1)"; then
        die "alice, a plain user, was allowed to register a user"
    fi
    say "alice may not register users: $answer"
    say "alice sees only her own instances:"
    tashi_as alice getInstances
}

show() {  # show VERB...: what the administrator sees
    local verb
    for verb in "$@"; do
        printf -- '--- tashi %s\n' "$verb"
        tashi_as_admin "$verb"
    done
}

print_how_to_use() {
    printf '\nPhases:\n'
    printf '  %s\n' "${SUMMARY[@]}"
    cat <<EOF

The demo cluster manager is still running: pid $CM_PID, log $LOG.
Point the client at it as the administrator:
    export TASHI_CM_HOST=127.0.0.1 TASHI_CM_PORT=$PORT TASHI_CONFIG=$CREDS
    .venv/bin/tashi getInstances
or as alice (password in $DEMO/passwords):
    TASHI_USER=alice TASHI_PASSWORD=... .venv/bin/tashi getMyInstances
Stop it:
    kill $CM_PID        (or: make demo-stop)
EOF
}

main() {
    [[ -x "$BIN/tashi-cm" && -x "$BIN/tashi" ]] \
        || die "$BIN has no tashi-cm or tashi; run scripts/bootstrap.sh (make demo does)"
    trap on_exit EXIT
    phase "stop an earlier demo cluster manager, clear the demo directory" fresh_state
    phase "write the demo configuration" write_config
    phase "start tashi-cm and wait for GET /health" start_and_wait
    export TASHI_CM_HOST=127.0.0.1 TASHI_CM_PORT="$PORT"
    phase "create networks (addNetwork)" create_network
    phase "create users alice and bob (registerUser)" create_users
    phase "put an image in the image store" create_image
    phase "register a host (addHost; no node manager runs on it yet)" add_host
    phase "create instances (createVm as alice, createMany as bob)" create_instances
    phase "ownership and roles are enforced" show_security
    phase "what the administrator sees" \
        show getInstances getVmLayout getHosts getUsers getNetworks getImages
    print_how_to_use
}

case "${1:-start}" in
    start) main ;;
    stop) stop_cm ;;
    *) die "usage: $0 [start|stop]" ;;
esac
