//! Many records through a PeerDriver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pons_core::NodeId;
use pons_proto::{Backoff, Frame, RecordId};
use pons_transport::{Outbox, PeerDriver, ResponseOutcome};

use super::support::*;

/// An outbox in memory: envelopes by id, and how often each was judged delivered.
pub struct TestOutbox {
    envelopes: HashMap<RecordId, Vec<u8>>,
    pub delivered: Mutex<HashMap<RecordId, u32>>,
    pub rejected: Mutex<Vec<RecordId>>,
    changed: tokio::sync::Notify,
}

impl TestOutbox {
    pub fn with_records(n: usize) -> (Arc<Self>, Vec<RecordId>) {
        let mut envelopes = HashMap::new();
        let mut ids = Vec::new();
        for i in 0..n {
            let id = uuid::Uuid::now_v7();
            let mut envelope = id.as_bytes().to_vec();
            envelope.extend_from_slice(format!(" record {i}").as_bytes());
            envelopes.insert(id, envelope);
            ids.push(id);
        }
        let outbox = Arc::new(Self {
            envelopes,
            delivered: Mutex::new(HashMap::new()),
            rejected: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
        });
        (outbox, ids)
    }

    pub fn delivered_count(&self) -> usize {
        self.delivered.lock().expect("lock").len()
    }

    /// Waits until `n` records were delivered (a hang guard bounds the test).
    pub async fn wait_delivered(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.delivered_count() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(90), wait)
            .await
            .expect("records were not all delivered");
    }
}

impl Outbox for TestOutbox {
    /// As a real outbox: only a record still waiting is sent (a record enqueued again after
    /// its receipt is not).
    async fn envelope(&self, id: RecordId) -> Option<Vec<u8>> {
        if self.delivered.lock().expect("lock").contains_key(&id) {
            return None;
        }
        self.envelopes.get(&id).cloned()
    }

    async fn on_response(&self, peer: &NodeId, id: RecordId, frame: Frame) -> ResponseOutcome {
        assert_eq!(peer.as_str(), "cuta");
        let Some(envelope) = self.envelopes.get(&id) else {
            return ResponseOutcome::Retry;
        };
        let outcome = match frame {
            // The "verification": the receipt must be over the exact bytes sent.
            Frame::Receipt { receipt } if receipt == receipt_for(envelope) => {
                *self.delivered.lock().expect("lock").entry(id).or_default() += 1;
                ResponseOutcome::Delivered
            }
            Frame::Reject { code, .. } if code.is_permanent() => {
                self.rejected.lock().expect("lock").push(id);
                ResponseOutcome::Rejected
            }
            _ => ResponseOutcome::Retry,
        };
        self.changed.notify_waiters();
        outcome
    }
}

pub fn sender_config() -> pons_proto::Config {
    let fast = Backoff {
        initial: Duration::from_millis(20),
        multiplier: 2,
        max: Duration::from_millis(300),
    };
    pons_proto::Config {
        max_in_flight: 8,
        record_backoff: fast,
        peer_backoff: fast,
        response_timeout: Duration::from_secs(10),
        seed: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_records_are_each_delivered_exactly_once() {
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    let recorder = Arc::new(Recorder::default());
    server.serve(recorder.clone());
    let (client, _) = endpoint(&fed, "vaa", limits());

    let (outbox, ids) = TestOutbox::with_records(200);
    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    let driver = PeerDriver::spawn(link, sender_config(), outbox.clone());
    for id in &ids {
        driver.enqueue(*id);
    }
    // Enqueueing twice changes nothing.
    driver.enqueue(ids[0]);
    outbox.wait_delivered(ids.len()).await;
    driver.shutdown().await;

    let delivered = outbox.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), 200);
    assert!(
        delivered.values().all(|&n| n == 1),
        "a record judged delivered twice"
    );
    let per_envelope = recorder.per_envelope.lock().expect("lock").clone();
    assert_eq!(per_envelope.len(), 200, "the handler saw every record");
    assert!(
        per_envelope.values().all(|&n| n == 1),
        "the handler saw a record more than once"
    );
    assert!(outbox.rejected.lock().expect("lock").is_empty());
    server.close().await;
}

#[tokio::test]
async fn a_record_gone_from_the_outbox_is_dropped_and_a_permanent_reject_ends_a_record() {
    struct Refusing;
    impl pons_transport::InboundHandler for Refusing {
        async fn on_deliver(&self, _: &pons_core::SpiffeId, _: Vec<u8>) -> Frame {
            Frame::Reject {
                code: pons_proto::RejectCode::PolicyDenied,
                reason: "not allowed".into(),
            }
        }
    }
    let fed = Federation::new(FEDERATION);
    let (server, server_addr) = endpoint(&fed, "cuta", limits());
    server.serve(Arc::new(Refusing));
    let (client, _) = endpoint(&fed, "vaa", limits());
    let (outbox, ids) = TestOutbox::with_records(3);
    let link = client.peer(node_id("cuta"), server_addr, "localhost".into());
    let driver = PeerDriver::spawn(link, sender_config(), outbox.clone());
    driver.enqueue(uuid::Uuid::now_v7()); // not in the outbox
    for id in &ids {
        driver.enqueue(*id);
    }
    let wait = async {
        while driver.pending() > 0 || outbox.rejected.lock().expect("lock").len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("driver settled");
    let mut rejected = outbox.rejected.lock().expect("lock").clone();
    rejected.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        rejected, expected,
        "each record rejected once, none retried"
    );
    assert_eq!(outbox.delivered_count(), 0);
    driver.shutdown().await;
}
