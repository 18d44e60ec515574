//! `cargo bench -p pons-cli --bench hot [-- FILTER]`: the CPU cost of each pure step a
//! record takes on the hot path, one core, no I/O: validate, seal, open, receipt, frame,
//! journal hash. Under `cargo test` (no `--bench` argument) each step runs once, untimed:
//! a smoke test that the steps still work.
//!
//! A plain `harness = false` main rather than criterion: one less dependency to build on a
//! 2-core machine, and these figures only need to explain `pons bench`'s CPU per record,
//! not detect 1 % regressions. Each step runs for a fixed window after a warm-up; the
//! output is ns per operation and operations per second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pons_core::envelope::{open_record, seal_record};
use pons_core::journal::{JournalDraft, JournalEntry, Operation, Outcome};
use pons_core::receipt::{Receipt, ReceiptItem, RECEIPT_VERSION};
use pons_core::retention::RetentionPolicy;
use pons_core::validate::{Draft, DraftContext};
use pons_core::{cose, NodeId, PseudonymKey, RecordId};
use pons_pki::{dev_ca, FederationTrust, KeyAlgorithm, NodeIdentity};
use pons_proto::Frame;
use time::OffsetDateTime;

const REPORT: &str = include_str!("../../../config/examples/minor-risk-report.json");
const WINDOW: Duration = Duration::from_millis(500);

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs this as a smoke test: each step
    // once, nothing timed.
    let measure = std::env::args().any(|a| a == "--bench");
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str, op: &mut dyn FnMut()| {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            return;
        }
        if !measure {
            op();
            println!("{name:<34} ran");
            return;
        }
        for _ in 0..10 {
            op();
        }
        let start = Instant::now();
        let mut n = 0_u64;
        while start.elapsed() < WINDOW {
            for _ in 0..4 {
                op();
            }
            n += 4;
        }
        let per = start.elapsed().as_secs_f64() / n as f64;
        println!(
            "{name:<34} {:>10.1} µs/op {:>10.0} op/s",
            per * 1e6,
            1.0 / per
        );
    };

    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        println!("-- nodes signing with {algorithm:?}");
        let now = OffsetDateTime::now_utc();
        let dir = tempfile::tempdir().expect("temporary directory");
        let nodes = [
            NodeId::new("adolescence").unwrap(),
            NodeId::new("cuta").unwrap(),
        ];
        let files = dev_ca(dir.path(), &nodes, "pons.example", algorithm, now, true)
            .expect("development federation");
        let trust = FederationTrust::load("pons.example", &files.ca_cert, &[files.crl.as_path()])
            .expect("trust")
            .to_core()
            .expect("core trust");
        let sender = NodeIdentity::load(&files.nodes[0].1, now)
            .expect("sender identity")
            .signer()
            .expect("sender signer");
        let receiver = NodeIdentity::load(&files.nodes[1].1, now)
            .expect("receiver identity")
            .signer()
            .expect("receiver signer");
        let key = PseudonymKey::from_bytes(&[42; 32]).unwrap();
        let draft = || Draft::parse_json("minor-risk-report", REPORT.as_bytes()).unwrap();
        // The dates a node fills in for a report that gives none (as the example does).
        let (review_by, erase_by) =
            RetentionPolicy::default_for(draft().class).deadlines(now.date());
        let ctx = DraftContext {
            id: RecordId::new_v7(now, [7; 10]),
            from: nodes[0].clone(),
            to: nodes[1].clone(),
            now,
            purpose: None,
            justification: None,
            pseudonym_key: &key,
            subject_ref: None,
            default_review_by: Some(review_by),
            default_erase_by: Some(erase_by),
            clock_skew: time::Duration::minutes(5),
        };
        let skew = time::Duration::minutes(5);

        run("validate (parse + into_record)", &mut || {
            black_box(draft().into_record(&ctx).unwrap());
        });
        let record = draft().into_record(&ctx).unwrap();
        run("seal_record (CBOR + sign)", &mut || {
            black_box(seal_record(&record, &sender).unwrap());
        });
        let envelope = seal_record(&record, &sender).unwrap();
        run("open_record (chain + verify + decode)", &mut || {
            black_box(open_record(&envelope, &trust, now, skew).unwrap());
        });
        let hash = cose::envelope_sha256(&envelope);
        run("envelope_sha256", &mut || {
            black_box(cose::envelope_sha256(black_box(&envelope)));
        });
        let receipt = || Receipt {
            v: RECEIPT_VERSION,
            receiver: nodes[1].clone(),
            sender: nodes[0].clone(),
            received_at: now,
            items: vec![ReceiptItem {
                record_id: *record.id.as_uuid(),
                envelope_sha256: hash,
                journal_seq: 1,
                effect: None,
            }],
        };
        run("receipt seal", &mut || {
            black_box(receipt().seal(&receiver).unwrap());
        });
        let sealed = receipt().seal(&receiver).unwrap();
        run("receipt open", &mut || {
            black_box(Receipt::open(&sealed, &trust, now).unwrap());
        });
        let frame = Frame::Deliver {
            envelope: envelope.clone(),
        };
        run("frame encode (deliver)", &mut || {
            black_box(frame.encode().unwrap());
        });
        let encoded = frame.encode().unwrap();
        run("frame decode (deliver)", &mut || {
            black_box(Frame::decode_body(&encoded[4..]).unwrap());
        });
        let entry = {
            let mut d = JournalDraft::new(
                now,
                nodes[0].clone(),
                "caseworker",
                Operation::Collect,
                Outcome::Success,
            );
            d.record_id = Some(*record.id.as_uuid());
            d.purpose = Some(record.purpose.clone());
            d.justification = Some(record.justification.clone());
            JournalEntry::seal(d, 1, [0; 32])
        };
        run("journal entry hash", &mut || {
            black_box(black_box(&entry).compute_hash());
        });
        println!(
            "   (envelope {} bytes, receipt {} bytes)",
            envelope.len(),
            sealed.len()
        );
    }
}
