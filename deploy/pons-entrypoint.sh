#!/bin/sh
# The container's entrypoint (deploy/Dockerfile). On the first start it makes the node's
# directory with `pons init` from the federation's certificates; then it runs the node in
# the foreground, as PID 1's child via exec, so SIGTERM (docker stop) reaches it and it
# flushes its store before it exits.
#
#   PONS_NODE_ID   the node's id (required), e.g. cuta
#   PONS_CERTS     a directory laid out as `pons pki dev-ca` makes it (required the first
#                  time): ca.pem, ca.crl.pem, pseudonym.key, <node-id>/{tls,sign}.{pem,key}
#   PONS_DIR       the node's directory (default /var/lib/pons/$PONS_NODE_ID)
#   PONS_LISTEN    the UDP address to listen on (default 0.0.0.0:7443)
#   PONS_PEERS     peers, space-separated NODE=IP:PORT
#   PONS_SEND      classes this node may send, space-separated NODE:CLASS
#   PONS_RECEIVE   classes this node may receive, space-separated NODE:CLASS
#   PONS_USERS     OS users given every role (default: the user running the node)
#   PONS           the pons binary (default: pons on PATH)
set -eu

: "${PONS_NODE_ID:?PONS_NODE_ID must name the node, e.g. cuta}"
pons="${PONS:-pons}"
dir="${PONS_DIR:-/var/lib/pons/$PONS_NODE_ID}"

if [ ! -e "$dir/node.toml" ]; then
    : "${PONS_CERTS:?PONS_CERTS must name the federation's certificates for the first start}"
    set -- --node-id "$PONS_NODE_ID" --dir "$dir" --certs "$PONS_CERTS" \
        --listen "${PONS_LISTEN:-0.0.0.0:7443}"
    for peer in ${PONS_PEERS:-}; do set -- "$@" --peer "$peer"; done
    for class in ${PONS_SEND:-}; do set -- "$@" --send "$class"; done
    for class in ${PONS_RECEIVE:-}; do set -- "$@" --receive "$class"; done
    if [ -n "${PONS_USERS:-}" ]; then set -- "$@" --users "$PONS_USERS"; fi
    "$pons" init "$@"
fi

exec "$pons" node run --config "$dir/node.toml"
