//! The `stream` sink: read through the control socket by `pons feed`, moved by its reader.
//!
//! A read returns records after a position (by default the sink's cursor: what was
//! acknowledged) and moves nothing, but each record read is journaled as a `consult` by the
//! reader (LED art. 25(1): consultation is logged; a read that is never acknowledged still
//! showed the record to someone). An acknowledgement `ack CURSOR` moves the cursor to
//! `CURSOR` and journals a `disclose` per record it passes. What was read but not
//! acknowledged is read again after a restart of the node or of the reader.

use std::time::Duration;

use pons_core::journal::{JournalDraft, Operation, Outcome};
use serde_json::{json, Value};

use super::{Feed, SinkConfig};
use crate::config::Role;
use crate::control::{Caller, Response};
use crate::runtime::Runtime;

/// Records per read when the reader does not say.
const DEFAULT_LIMIT: usize = 100;
/// The most records one read returns.
const MAX_LIMIT: usize = 1000;
/// The longest a read waits for a record to arrive.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Up to `limit` records after `from` (default: the sink's cursor); when there are none and
/// `wait_ms` is set, waits up to that long for one to arrive.
pub(crate) async fn read(
    feed: &Feed,
    runtime: &Runtime,
    caller: &Caller,
    sink: &SinkConfig,
    from: Option<u64>,
    limit: Option<usize>,
    wait_ms: Option<u64>,
) -> Result<Value, Response> {
    let store = &runtime.store;
    let cursor = store
        .feed_cursor(&sink.name)
        .map_err(|e| Response::runtime(e.to_string()))?;
    let start = from.unwrap_or(cursor);
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut arrivals = feed.arrivals.subscribe();
    arrivals.borrow_and_update();
    let mut recs = store
        .inbox_after(start, limit)
        .map_err(|e| Response::runtime(e.to_string()))?;
    if recs.is_empty() {
        if let Some(ms) = wait_ms.filter(|ms| *ms > 0) {
            let wait = Duration::from_millis(ms).min(MAX_WAIT);
            // Either a record arrived or the wait ended: read again in both cases.
            let _ = tokio::time::timeout(wait, arrivals.changed()).await;
            recs = store
                .inbox_after(start, limit)
                .map_err(|e| Response::runtime(e.to_string()))?;
        }
    }
    let records = recs
        .iter()
        .map(|r| feed.record(runtime, &sink.name, r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Response::runtime)?;
    // Journaled before anything is shown: no journal entry, no records.
    let now = runtime.now();
    let drafts: Vec<JournalDraft> = recs
        .iter()
        .zip(&records)
        .map(|(rec, value)| {
            let mut d = JournalDraft::new(
                now,
                runtime.node().clone(),
                caller.user.as_str(),
                Operation::Consult,
                Outcome::Success,
            );
            d.role = Some(Role::Operator.as_str().to_owned());
            d.record_id = Some(rec.id);
            d.class = Some(rec.class.clone());
            d.subject_ref = rec.subject_ref.clone();
            d.justification = Some(format!("sink:{} read", sink.name));
            d.purpose = value["record"]["purpose"].as_str().map(str::to_owned);
            d.legal_basis = value["record"]["legal_basis"].as_str().map(str::to_owned);
            d
        })
        .collect();
    store
        .feed_journal_reads(&drafts)
        .await
        .map_err(|e| Response::runtime(format!("cannot journal the read: {e}")))?;
    let next = recs.last().map_or(start, |r| r.arrival_seq);
    Ok(json!({
        "sink": sink.name,
        "acknowledged": cursor,
        "next": next,
        "records": records,
    }))
}

/// Acknowledges every record up to `cursor`: moves the sink's cursor and journals the
/// hand-overs, with the caller as actor.
pub(crate) async fn ack(
    feed: &Feed,
    runtime: &Runtime,
    caller: &Caller,
    sink: &SinkConfig,
    cursor: u64,
) -> Result<Value, Response> {
    let advance = feed
        .advance(
            runtime,
            &sink.name,
            cursor,
            &caller.user,
            Some(Role::Operator.as_str()),
            &[],
        )
        .await
        .map_err(|e| match e {
            pons_store::StoreError::FeedBeyondInbox { .. } => {
                Response::invalid(format!("cursor: {e}"), vec![])
            }
            other => Response::runtime(other.to_string()),
        })?;
    feed.note(&sink.name, advance.journal_seqs.len(), None, runtime.now());
    Ok(json!({
        "sink": sink.name,
        "acknowledged": advance.cursor,
        "journaled": advance.journal_seqs.len(),
    }))
}
