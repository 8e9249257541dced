#!/bin/sh
# The kernel matrix's focused suite (issue 16). `cargo xtask kernels` runs it as PID 1's
# child inside each matrix kernel booted in qemu (tests/kernels/init), and on this host's own
# kernel inside a private network + mount namespace. It only produces evidence: every result
# lands in $OUT as files, and xtask/src/kernels.rs judges them (one checker for VM and host).
#
# Traffic goes to loopback only (a private network namespace on the host, the VM's own lo):
# dnsmasq answers *.kmatrix.test, `openssl s_server` serves TLS on 127.0.0.1:443 and
# [::1]:443, and real clients (curl, openssl s_client) talk to them.
#
# Phases, each with its own agent process:
#   watch     every hook attached; DNS, TLS v4/v6 ClientHellos and connects attributed
#   degraded  tracefs hidden (a deliberately missing hook): reported, not fatal
#   enforce   `run` with an enforce policy: blocked name and networks refused, the rest not;
#             clean stop; fail-open afterwards
#
# Environment: AGENT (agent binary), DATA (this folder: catalogue/, policy.toml), OUT.
set -u
: "${AGENT:?}" "${DATA:?}" "${OUT:?}"
export AGENT DATA OUT
# Plain log lines (no ANSI colours) in the evidence.
export NO_COLOR=1
mkdir -p "$OUT"
RES="$OUT/results.env"
: >"$RES"

note() { echo "kernels-suite: [$(cut -d" " -f1 /proc/uptime)] $*" >&2; }
put() { echo "$1=$2" >>"$RES"; }
# Hundredths of a second since boot (busybox date has no %N).
now_cs() {
    read -r up _ </proc/uptime
    echo "${up%.*}${up#*.}"
}
# wait_for FILE PATTERN SECONDS: until FILE has a line matching PATTERN.
wait_for() {
    i=0
    while [ "$i" -lt $(($3 * 5)) ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
# stop_agent PID NAME: SIGTERM, then the exit code (or "hung" after 30 s, then SIGKILL).
stop_agent() {
    kill -TERM "$1" 2>/dev/null
    i=0
    while kill -0 "$1" 2>/dev/null && [ "$i" -lt 150 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1"
        put "$2_rc" hung
    else
        wait "$1"
        put "$2_rc" "$?"
    fi
}
# client NAME CMD...: runs a real client (a program, not a shell function, so that $! is
# the client's own pid), records its pid and exit code.
client() {
    name=$1
    shift
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
    pid=$!
    wait "$pid"
    rc=$?
    put "${name}_pid" "$pid"
    put "${name}_rc" "$rc"
}
# Clients run directly (not through a function) so that $! is the client's own pid.
CURL_TLS="curl -sS -k -o /dev/null --max-time 8"

# --- loopback, resolver, servers -------------------------------------------------------
ip link set lo up
if ! grep -q '^nameserver 127.0.0.1' /etc/resolv.conf 2>/dev/null; then
    # The host run: a private mount namespace, so this only changes our own view.
    echo "nameserver 127.0.0.1" >"$OUT/resolv.conf"
    mount --bind "$OUT/resolv.conf" /etc/resolv.conf
fi
put kernel "$(uname -r)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=kmatrix.test -keyout "$OUT/key.pem" -out "$OUT/cert.pem" \
    -addext "subjectAltName=DNS:*.kmatrix.test" 2>"$OUT/openssl-req.err" ||
    note "openssl req failed: $(cat "$OUT/openssl-req.err")"
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root \
    --pid-file= --bind-interfaces --listen-address=127.0.0.1 --port=53 \
    --address=/kmatrix.test/127.0.0.1 --address=/kmatrix.test/::1 \
    --log-facility=- 2>"$OUT/dnsmasq.err" &
SERVERS=$!
for addr in 127.0.0.1:443 '[::1]:443'; do
    openssl s_server -quiet -www -accept "$addr" -cert "$OUT/cert.pem" -key "$OUT/key.pem" \
        >/dev/null 2>>"$OUT/s_server.err" </dev/null &
    SERVERS="$SERVERS $!"
done
# Ready when a client gets through (before any agent runs: the baseline).
i=0
until $CURL_TLS -4 https://allowed.kmatrix.test/ 2>/dev/null && $CURL_TLS -6 https://v6.kmatrix.test/ 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -gt 50 ] && {
        note "servers did not come up: $(cat "$OUT/dnsmasq.err" "$OUT/s_server.err")"
        break
    }
    sleep 0.2
done
put servers_ready_tries "$i"

# --- watch: every hook attached, attribution ---------------------------------------------
note "watch: starting the agent"
t0=$(now_cs)
"$AGENT" watch --json --metrics 127.0.0.1:9464 --dedup-secs 1 --poll-ms 20 \
    >"$OUT/watch.jsonl" 2>"$OUT/watch.log" &
AGENT_PID=$!
if wait_for "$OUT/watch.log" "sensor started" 120; then
    note "watch: sensor started"
    put watch_start_cs $(($(now_cs) - t0))
    client curl4 $CURL_TLS -4 https://allowed.kmatrix.test/
    client curl6 $CURL_TLS -6 https://v6.kmatrix.test/
    client s_client openssl s_client -connect 127.0.0.1:443 -servername openssl.kmatrix.test </dev/null
    sleep 2
    curl -sS --max-time 5 http://127.0.0.1:9464/metrics >"$OUT/watch.metrics" 2>&1
fi
stop_agent "$AGENT_PID" watch

note "degraded: starting the agent without tracefs"
# --- degraded: tracefs hidden, so the exec/exit tracepoints cannot attach -----------------
# A private mount namespace where /sys/kernel is a read-only tmpfs holding only btf/: no
# tracefs is mounted and none can be. The agent must say so and keep the other hooks.
unshare -m sh -c '
    set -e
    umount -l /sys/kernel/tracing 2>/dev/null || true
    umount -l /sys/kernel/debug 2>/dev/null || true
    mkdir -p "$OUT/btf"
    mount --bind /sys/kernel/btf "$OUT/btf"
    mount -t tmpfs -o size=64k none /sys/kernel
    mkdir /sys/kernel/btf
    mount --bind "$OUT/btf" /sys/kernel/btf
    mount -o remount,ro /sys/kernel
    exec "$AGENT" watch --json --metrics 127.0.0.1:9465 --dedup-secs 1 --poll-ms 20
' >"$OUT/degraded.jsonl" 2>"$OUT/degraded.log" &
AGENT_PID=$!
if wait_for "$OUT/degraded.log" "sensor started" 120; then
    client degraded_curl $CURL_TLS -4 https://allowed.kmatrix.test/
    sleep 2
    curl -sS --max-time 5 http://127.0.0.1:9465/metrics >"$OUT/degraded.metrics" 2>&1
fi
stop_agent "$AGENT_PID" degraded

# --- enforce: blocked name and networks refused, precisely; fail-open -------------------
mkdir -p "$OUT/enforce"
cat >"$OUT/enforce/agent.toml" <<EOF
[agent]
state_dir = "$OUT/enforce/state"
window_secs = 2

[rules]
catalogue = "$DATA/catalogue"
policy = "$DATA/policy.toml"

[output]
findings_jsonl = "$OUT/findings.jsonl"
EOF
note "enforce: starting the agent"
client baseline_blocked $CURL_TLS -4 https://blocked.kmatrix.test/
"$AGENT" run --config "$OUT/enforce/agent.toml" --poll-ms 20 >"$OUT/run.out" 2>"$OUT/run.log" &
AGENT_PID=$!
if wait_for "$OUT/run.log" "enforcing blocks in the kernel" 120; then
    t0=$(now_cs)
    client blocked_name $CURL_TLS -4 https://blocked.kmatrix.test/
    put blocked_name_cs $(($(now_cs) - t0))
    client blocked_sub $CURL_TLS -4 https://api.blocked.kmatrix.test/
    t0=$(now_cs)
    client allowed_name $CURL_TLS -4 https://allowed.kmatrix.test/
    put allowed_name_cs $(($(now_cs) - t0))
    # No route leads to the documentation prefixes: without the block these fail with
    # ENETUNREACH, with it connect() gets EPERM.
    client blocked_net4 curl -v -sS -o /dev/null --max-time 5 http://192.0.2.10/
    client blocked_net6 curl -v -sS -o /dev/null --max-time 5 'http://[2001:db8:7::10]/'
    # Findings close every 2 s window; give the aggregator one window.
    sleep 3
fi
stop_agent "$AGENT_PID" run
client failopen_name $CURL_TLS -4 https://blocked.kmatrix.test/

for p in $SERVERS; do kill "$p" 2>/dev/null; done
put done 1
note "done"
