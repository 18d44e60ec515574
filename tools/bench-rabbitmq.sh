#!/usr/bin/env bash
# RabbitMQ with publisher confirms, on this machine: the comparison for `pons bench`
# (issue 7, docs/performance.md). Not part of the tests.
#
# Installs Debian's rabbitmq-server and python3-pika (apt-get) if they are missing, runs a
# private RabbitMQ node as the current user in a temporary directory, listening on
# 127.0.0.1 only (AMQP, Erlang distribution and epmd), and publishes persistent messages
# (delivery_mode 2) of SIZE bytes to a durable classic queue, with publisher confirms:
#
#   one at a time     each publish waits for its confirm (what a caller that needs "it is
#                     durable" before going on gets)
#   N in flight       up to WINDOW unconfirmed publishes outstanding, confirms counted as
#                     they come (multiple acks included)
#
# No TLS, no signatures, no consumer: the broker's durable-queue path alone. Prints
# messages/s for both, and the JSON line the docs quote.
#
# Usage: tools/bench-rabbitmq.sh [--size BYTES] [--single N] [--window N] [--windowed N]
#                                [--port PORT] [--dir DIR]
# Needs root or sudo for apt-get only when the packages are missing.
set -euo pipefail

SIZE=2048        # message body, bytes
SINGLE=3000      # messages published one at a time
WINDOW=1024      # unconfirmed messages in flight
WINDOWED=50000   # messages published with WINDOW in flight
PORT=5699        # AMQP port (the Erlang distribution uses PORT + 20000)
BASE=""          # where the temporary directory is made (the file system measured)

while [[ $# -gt 0 ]]; do
    case "$1" in
        --size) SIZE="$2"; shift 2 ;;
        --single) SINGLE="$2"; shift 2 ;;
        --window) WINDOW="$2"; shift 2 ;;
        --windowed) WINDOWED="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --dir) BASE="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench-rabbitmq: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
PYTHON=/usr/bin/python3

if [[ ! -x "$SERVER" ]] || ! "$PYTHON" -c 'import pika' 2>/dev/null; then
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then SUDO=sudo; fi
    echo "bench-rabbitmq: installing rabbitmq-server and python3-pika (apt-get)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        rabbitmq-server python3-pika >&2
fi
# The package may have started its own node (where there is an init system): ours has
# its own name, ports and directory, and does not touch it.

if [[ -n "$BASE" ]]; then
    DIR="$(mktemp -d "$BASE/pons-rabbitmq-XXXXXX")"
else
    DIR="$(mktemp -d -t pons-rabbitmq-XXXXXX)"
fi
NODE="pons-bench-$$@localhost"
export HOME="$DIR"                       # the Erlang cookie lives here
export RABBITMQ_NODENAME="$NODE"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="$PORT"
export RABBITMQ_DIST_PORT=$((PORT + 20000))
export ERL_EPMD_ADDRESS=127.0.0.1        # epmd on loopback only
export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq"
export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config"
export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
export RABBITMQ_LOG_BASE="$DIR/log"
export RABBITMQ_PID_FILE="$DIR/pid"
mkdir -p "$DIR/mnesia" "$DIR/log"
: > "$RABBITMQ_CONF_ENV_FILE"
echo '[].' > "$RABBITMQ_ENABLED_PLUGINS_FILE"
echo '[].' > "$RABBITMQ_ADVANCED_CONFIG_FILE"
cat > "$DIR/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$PORT
loopback_users.guest = true
EOF

SERVER_PID=""
# The Erlang node starts epmd (the port mapper) if none runs; stop it afterwards only then.
EPMD_WAS_RUNNING=""
if pgrep -x epmd >/dev/null 2>&1; then EPMD_WAS_RUNNING=yes; fi
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        "$CTL" -n "$NODE" stop >/dev/null 2>&1 || kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -z "$EPMD_WAS_RUNNING" ]]; then
        # Refused by epmd while another Erlang node is registered: then it stays.
        epmd -kill >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT

echo "bench-rabbitmq: starting $NODE on 127.0.0.1:$PORT, data in $DIR" >&2
"$SERVER" > "$DIR/log/server.out" 2>&1 &
SERVER_PID=$!
# await_startup fails at once while the Erlang node is not up yet: try again for 2 minutes.
started=""
for _ in $(seq 1 120); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    if "$CTL" -n "$NODE" await_startup --timeout 5 >/dev/null 2>&1; then
        started=yes
        break
    fi
    sleep 1
done
if [[ -z "$started" ]]; then
    echo "bench-rabbitmq: the node did not start; its output:" >&2
    tail -n 40 "$DIR/log/server.out" >&2
    exit 1
fi
VERSION="$("$CTL" -n "$NODE" version 2>/dev/null || echo unknown)"

"$PYTHON" - "$PORT" "$SIZE" "$SINGLE" "$WINDOW" "$WINDOWED" "$VERSION" <<'PY'
import json
import sys
import time

import pika

port, size, single, window, windowed = (int(a) for a in sys.argv[1:6])
version = sys.argv[6]
params = pika.ConnectionParameters(host="127.0.0.1", port=port)
body = b"x" * size
props = pika.BasicProperties(delivery_mode=2)  # persistent
QUEUE = "pons-bench"


def fresh_queue(channel):
    channel.queue_declare(queue=QUEUE, durable=True)
    channel.queue_purge(queue=QUEUE)


def one_at_a_time(n):
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    fresh_queue(ch)
    ch.confirm_delivery()
    # Not measured: the connection and the queue's first writes.
    for _ in range(50):
        ch.basic_publish("", QUEUE, body, props, mandatory=True)
    start = time.perf_counter()
    for _ in range(n):
        # Returns once the broker confirmed the message (raises if it was nacked).
        ch.basic_publish("", QUEUE, body, props, mandatory=True)
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def in_flight(n, window):
    """Publishes n messages with at most `window` unconfirmed, on pika's event loop."""
    state = {"sent": 0, "confirmed": 0, "next_tag": 1, "start": None, "end": None,
             "nacked": 0}

    def publish_more(ch):
        while state["sent"] < n and state["sent"] - state["confirmed"] < window:
            ch.basic_publish("", QUEUE, body, props)
            state["sent"] += 1

    def on_confirm(frame):
        method = frame.method
        tag = method.delivery_tag
        count = tag - state["next_tag"] + 1 if method.multiple else 1
        state["next_tag"] = max(state["next_tag"], tag + 1)
        if isinstance(method, pika.spec.Basic.Nack):
            state["nacked"] += count
        state["confirmed"] += count
        if state["confirmed"] >= n:
            state["end"] = time.perf_counter()
            conn.close()
        else:
            publish_more(chan[0])

    chan = []

    def on_purged(_frame):
        ch = chan[0]
        ch.confirm_delivery(on_confirm)
        state["start"] = time.perf_counter()
        publish_more(ch)

    def on_declared(_frame):
        chan[0].queue_purge(queue=QUEUE, callback=on_purged)

    def on_channel(ch):
        chan.append(ch)
        ch.queue_declare(queue=QUEUE, durable=True, callback=on_declared)

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_closed(connection, _reason):
        connection.ioloop.stop()

    conn = pika.SelectConnection(params, on_open_callback=on_open,
                                 on_close_callback=on_closed)
    conn.ioloop.start()
    if state["end"] is None:
        sys.exit("bench-rabbitmq: the connection closed before every confirm arrived")
    if state["nacked"]:
        sys.exit(f"bench-rabbitmq: {state['nacked']} messages were nacked")
    return n / (state["end"] - state["start"])


single_rate = one_at_a_time(single)
window_rate = in_flight(windowed, window)
print(f"RabbitMQ {version}, persistent {size}-byte messages, durable queue, publisher confirms")
print(f"  one at a time ({single} messages)            {single_rate:10.0f} messages/s")
print(f"  {window} unconfirmed in flight ({windowed} messages) {window_rate:10.0f} messages/s")
print(json.dumps({
    "rabbitmq": version, "size": size,
    "one_at_a_time_per_s": round(single_rate), "one_at_a_time_messages": single,
    "window": window, "window_per_s": round(window_rate), "window_messages": windowed,
}))
PY
