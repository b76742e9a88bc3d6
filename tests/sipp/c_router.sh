#!/usr/bin/env bash
# End-to-end test of the C router (examples/c/router.c over the C ABI) with SIPp on
# 127.0.0.1: a SIPp UAS on 127.0.0.1:5080 (where the router's built-in default config
# routes every number), the router on 127.0.0.1:5060, a SIPp UAC in front of it making
# 100 answered calls at 20 calls/s (INVITE, 180, 200, ACK, 0.5 s, BYE, 200; scenarios
# tests/sipp/uac.xml and uas.xml). Everything is bounded: SIPp runs under `timeout`,
# with -timeout and -recv_timeout, the router under --for, and an EXIT trap stops
# whatever is still running.
#
# Passes when both SIPp instances exit 0 and count every call successful and none
# failed (-trace_stat), and the router's summary counts every call started, answered
# and ended, none rejected, no malformed datagram, and the router exits 0 on SIGINT.
#
# Needs: sipp (Debian: sip-tester), make, cc (gcc), cargo, timeout, awk.
#
# Environment:
#   CARGO_TARGET_DIR   where cargo builds the static library (default: target)
#   C_ROUTER_ASAN=1    run the AddressSanitizer/UBSan build (make test-build) instead
#   C_ROUTER_CALLS     calls to make (default 100)
#   C_ROUTER_RATE      calls per second (default 20)
#   C_ROUTER_PORT      router port (default 5060)
#   C_ROUTER_UAS_PORT  UAS port (default 5080; another port writes a config for it)
#   C_ROUTER_UAC_PORT  UAC port (default 5070)
#   C_ROUTER_LOG_DIR   keep logs here (default: a temporary directory, removed on PASS)
#
# Prints PASS or FAIL (with the failed checks and where the logs are); exit 0 or 1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

SIPP="${SIPP:-sipp}"
CALLS="${C_ROUTER_CALLS:-100}"
RATE="${C_ROUTER_RATE:-20}"
RPORT="${C_ROUTER_PORT:-5060}"
UAS_PORT="${C_ROUTER_UAS_PORT:-5080}"
UAC_PORT="${C_ROUTER_UAC_PORT:-5070}"
PAUSE_MS=500
# Seconds the calls may take: the ramp plus the call length, with room to spare.
LIMIT=$((CALLS / RATE + 30))

PIDS=()
LOG_DIR=""
FAILS=()

# ----- processes --------------------------------------------------------------------

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait_bounded "$pid" 3 || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'echo "c_router: interrupted (logs in ${LOG_DIR:-none})" >&2; exit 130' INT TERM

forget_pid() {
    local pid="$1" p keep=()
    for p in "${PIDS[@]}"; do
        [[ "$p" == "$pid" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# Whether our child PID is still running (a zombie has ended).
alive() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != "Z" ]]
}

# wait_bounded PID SECS: waits at most SECS for our child PID, then TERM, then KILL;
# returns its exit status.
wait_bounded() {
    local pid="$1" secs="$2" rc=0 i
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    forget_pid "$pid"
    return "$rc"
}

udp_hex() { printf '0100007F:%04X' "$1"; }

udp_port_busy() { grep -q " $(udp_hex "$1") " /proc/net/udp 2>/dev/null; }

# wait_udp_port PORT SECS: until something listens on 127.0.0.1:PORT/udp.
wait_udp_port() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        udp_port_busy "$1" && return 0
        sleep 0.1
    done
    return 1
}

# ----- results ----------------------------------------------------------------------

# csv_last FILE COLUMN: COLUMN of the last row of a SIPp ';'-separated statistics file.
csv_last() {
    [[ -s "$1" ]] || return 0
    awk -F';' -v col="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { last = $0 }
        END { if (c && last != "") { split(last, a, ";"); print a[c] } }' "$1"
}

# router_stat KEY: the number after KEY in the router's exit summary.
router_stat() {
    awk -v key="$1" '
        /^--- summary/ { on = 1; next }
        on {
            line = "  " $0 "  "
            p = index(line, "  " key " ")
            if (p) {
                split(substr(line, p + length(key) + 3), w, " ")
                print w[1]
                exit
            }
        }' "$LOG_DIR/router.log"
}

check() { # check LABEL ACTUAL EXPECTED
    local label="$1" actual="$2" expected="$3"
    if [[ ! "$actual" =~ ^[0-9]+$ ]] || ((actual != expected)); then
        FAILS+=("$label: got '${actual:-missing}', want $expected")
    fi
}

# ----- main --------------------------------------------------------------------------

for tool in "$SIPP" make timeout awk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "c_router: FAIL: $tool not found (sipp: apt-get install sip-tester)" >&2
        exit 1
    fi
done
for port in "$RPORT" "$UAS_PORT" "$UAC_PORT"; do
    if udp_port_busy "$port"; then
        echo "c_router: FAIL: UDP port 127.0.0.1:$port is in use (set C_ROUTER_PORT," \
            "C_ROUTER_UAS_PORT or C_ROUTER_UAC_PORT)" >&2
        exit 1
    fi
done

if [[ "${C_ROUTER_ASAN:-0}" == 1 ]]; then
    echo "==> make -C examples/c test-build (ASan + UBSan)"
    make -C examples/c test-build
    ROUTER="$ROOT/examples/c/router-asan"
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
else
    echo "==> make -C examples/c"
    make -C examples/c
    ROUTER="$ROOT/examples/c/router"
fi
[[ -x "$ROUTER" ]] || { echo "c_router: FAIL: $ROUTER was not built" >&2; exit 1; }

if [[ -n "${C_ROUTER_LOG_DIR:-}" ]]; then
    LOG_DIR="$C_ROUTER_LOG_DIR"
    mkdir -p "$LOG_DIR"
else
    LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ringfence-c-router.XXXXXX")"
fi
echo "==> $CALLS calls at $RATE cps: UAC :$UAC_PORT -> C router :$RPORT -> UAS :$UAS_PORT" \
    "(logs $LOG_DIR)"

# The router's built-in default routes to 127.0.0.1:5080; another UAS port needs a config.
ROUTER_ARGS=(--listen "127.0.0.1:$RPORT" --for $((LIMIT + 20)) --quiet)
if [[ "$UAS_PORT" != 5080 ]]; then
    printf 'seed = 1\n\n[routing]\ndefault_route = ["127.0.0.1:%s"]\n' "$UAS_PORT" \
        >"$LOG_DIR/router.toml"
    ROUTER_ARGS+=(--config "$LOG_DIR/router.toml")
fi
"$ROUTER" "${ROUTER_ARGS[@]}" >"$LOG_DIR/router.log" 2>&1 &
router_pid=$!
PIDS+=("$router_pid")
if ! wait_udp_port "$RPORT" 10; then
    FAILS+=("the router did not start listening on 127.0.0.1:$RPORT")
fi

UAC_RC=-1
UAS_RC=-1
if ((${#FAILS[@]} == 0)); then
    common=(-i 127.0.0.1 -m "$CALLS" -nostdin -recv_timeout 10000 -trace_stat -fd 1
        -trace_err -trace_screen)
    (cd "$LOG_DIR" && exec timeout -k 5 $((LIMIT + 15)) "$SIPP" -sf "$HERE/uas.xml" \
        -p "$UAS_PORT" "${common[@]}" -timeout $((LIMIT + 5))s -timeout_error \
        -stf uas_stat.csv -error_file uas_errors.log -screen_file uas_screen.log) \
        >"$LOG_DIR/uas.out" 2>&1 &
    uas_pid=$!
    PIDS+=("$uas_pid")
    wait_udp_port "$UAS_PORT" 10 || FAILS+=("the SIPp UAS did not start on :$UAS_PORT")

    (cd "$LOG_DIR" && exec timeout -k 5 $((LIMIT + 10)) "$SIPP" -sf "$HERE/uac.xml" \
        "127.0.0.1:$RPORT" -p "$UAC_PORT" "${common[@]}" -r "$RATE" -d "$PAUSE_MS" \
        -timeout "${LIMIT}s" -timeout_error \
        -stf uac_stat.csv -error_file uac_errors.log -screen_file uac_screen.log) \
        >"$LOG_DIR/uac.out" 2>&1 &
    uac_pid=$!
    PIDS+=("$uac_pid")

    UAC_RC=0
    wait_bounded "$uac_pid" $((LIMIT + 20)) || UAC_RC=$?
    UAS_RC=0
    # The UAS ends once it has handled every call; after a failed UAC it may never.
    if ((UAC_RC == 0)); then
        wait_bounded "$uas_pid" 15 || UAS_RC=$?
    else
        wait_bounded "$uas_pid" 3 || UAS_RC=$?
    fi
fi

# SIGINT: the router prints its summary and exits 0.
kill -INT "$router_pid" 2>/dev/null || true
ROUTER_RC=0
wait_bounded "$router_pid" 10 || ROUTER_RC=$?

check "UAC exit code" "$UAC_RC" 0
check "UAS exit code" "$UAS_RC" 0
check "UAC successful calls" "$(csv_last "$LOG_DIR/uac_stat.csv" 'SuccessfulCall(C)')" "$CALLS"
check "UAC failed calls" "$(csv_last "$LOG_DIR/uac_stat.csv" 'FailedCall(C)')" 0
check "UAS successful calls" "$(csv_last "$LOG_DIR/uas_stat.csv" 'SuccessfulCall(C)')" "$CALLS"
check "UAS failed calls" "$(csv_last "$LOG_DIR/uas_stat.csv" 'FailedCall(C)')" 0
check "router exit code (SIGINT)" "$ROUTER_RC" 0
check "router calls started" "$(router_stat 'calls started')" "$CALLS"
check "router answered" "$(router_stat answered)" "$CALLS"
check "router ended" "$(router_stat ended)" "$CALLS"
check "router rejected" "$(router_stat rejected)" 0
check "router malformed" "$(router_stat malformed)" 0
if grep -q -e 'Sanitizer' -e 'runtime error:' "$LOG_DIR/router.log"; then
    FAILS+=("sanitizer report in router.log")
fi

summary="uac $(csv_last "$LOG_DIR/uac_stat.csv" 'SuccessfulCall(C)')/$(csv_last "$LOG_DIR/uac_stat.csv" 'FailedCall(C)')"
summary+=" uas $(csv_last "$LOG_DIR/uas_stat.csv" 'SuccessfulCall(C)')/$(csv_last "$LOG_DIR/uas_stat.csv" 'FailedCall(C)')"
summary+=" router started=$(router_stat 'calls started') answered=$(router_stat answered) ended=$(router_stat ended)"

if ((${#FAILS[@]} == 0)); then
    echo "c_router: PASS ($CALLS calls; ok/failed $summary)"
    if [[ -z "${C_ROUTER_LOG_DIR:-}" ]]; then
        rm -rf "$LOG_DIR"
    fi
    exit 0
fi
echo "c_router: FAIL ($summary)"
printf '    %s\n' "${FAILS[@]}"
for f in uac uas; do
    if [[ -s "$LOG_DIR/${f}_errors.log" ]]; then
        echo "---- $f errors (first lines)"
        tr -d '\r' <"$LOG_DIR/${f}_errors.log" | head -n 8 | cut -c 1-240 | sed 's/^/    /'
    elif [[ -s "$LOG_DIR/$f.out" ]]; then
        echo "---- $f output (tail)"
        tail -n 10 "$LOG_DIR/$f.out" | sed 's/^/    /'
    fi
done
echo "---- router log (tail)"
tail -n 15 "$LOG_DIR/router.log" | sed 's/^/    /'
echo "---- logs kept in $LOG_DIR"
exit 1
