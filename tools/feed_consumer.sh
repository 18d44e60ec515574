#!/bin/sh
# A minimal consumer for a Pons `exec` sink: exactly once, by record id.
#
#   [[sink]]
#   name = "inbox-dir"
#   kind = "exec"
#   command = ["/bin/sh", "/opt/pons/feed_consumer.sh", "/var/lib/cuta/records"]
#
# The node runs this once per record with the feed record (one line of JSON, see
# docs/feed-record.schema.json) on standard input, and PONS_RECORD_ID, PONS_FEED_CURSOR and
# PONS_FEED_SINK in the environment. Exit 0 acknowledges; anything else is retried with
# backoff, and after the sink's max_attempts the record becomes a dead letter
# (`pons feed dead-letters`, `pons feed retry ID`).
#
# A run may be repeated for a record already taken (the node crashed after the exit 0 but
# before it noted it): the record is written under its id, atomically, so a repeat
# replaces the file with the same bytes, and the `seen` check below skips the work.
set -eu

out="${1:?usage: feed_consumer.sh OUTPUT_DIR}"
id="${PONS_RECORD_ID:?not run by a pons exec sink}"
case "$id" in
  *[!0-9a-f-]*) echo "feed_consumer: unexpected record id $id" >&2; exit 2 ;;
esac
mkdir -p "$out"

if [ -e "$out/$id.json" ]; then
  cat > /dev/null   # already taken: read the input, do nothing, acknowledge
  exit 0
fi

tmp="$out/.$id.tmp"
cat > "$tmp"
grep -q '"format":"pons-feed-record/1"' "$tmp" || { echo "feed_consumer: unknown format" >&2; rm -f "$tmp"; exit 2; }
grep -q '"verified":true' "$tmp" || { echo "feed_consumer: record $id did not verify" >&2; rm -f "$tmp"; exit 3; }
sync "$tmp" 2>/dev/null || sync
mv "$tmp" "$out/$id.json"
sync "$out" 2>/dev/null || sync
# Your system's work goes here, keyed by "$id" so that a repeat does no harm.
exit 0
