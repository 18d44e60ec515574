//! Journal exports and signed checkpoints: round trips and tamper tests.
//!
//! Reuses the test PKI of the cose tests (`tests/cose/pki.rs`, `tests/cose/fed.rs`).

#![allow(dead_code)]

#[path = "cose/pki.rs"]
mod pki;

#[path = "cose/fed.rs"]
mod fed;

use pons_core::checkpoint::{
    check_journal, check_successor, Checkpoint, CheckpointError, CheckpointFault, Cosigned,
};
use pons_core::journal::{
    verify_chain, ChainHead, ExportFault, ExportHeader, ExportLine, ExportVerifier,
    ExportedCheckpoint, ExportedEntry, JournalDraft, JournalEntry, JournalFilter, Operation,
    Outcome, EXPORT_FORMAT, EXPORT_VERSION,
};
use pons_core::{NodeId, SigningAlgorithm, SigningKey};
use time::macros::datetime;
use uuid::Uuid;

use fed::Fed;
use pki::NOW;

fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("node id")
}

fn chain(n: u64) -> Vec<JournalEntry> {
    let mut head = ChainHead::genesis();
    (0..n)
        .map(|i| {
            let mut d = JournalDraft::new(
                datetime!(2026-11-23 10:00:00.5 +01:00) + time::Duration::seconds(i as i64),
                node("cuta"),
                if i % 2 == 0 { "system" } else { "dpo1" },
                if i % 3 == 0 {
                    Operation::Receive
                } else {
                    Operation::Consult
                },
                Outcome::Success,
            );
            d.record_id = Some(Uuid::from_u128(
                0x0192_0000_0000_7000_8000_0000_0000_0000 + u128::from(i % 4),
            ));
            d.counterpart = Some(node("adolescence"));
            d.subject_ref = Some(format!("{:064x}", i % 2));
            d.justification = Some(format!("reason \"{i}\", with, commas\nand a line break"));
            let e = JournalEntry::seal(d, head.seq + 1, head.hash);
            head = ChainHead::of(&e);
            e
        })
        .collect()
}

fn export(entries: &[JournalEntry], filtered: bool) -> Vec<ExportLine> {
    let head = entries
        .last()
        .map(ChainHead::of)
        .unwrap_or(ChainHead::genesis());
    let mut lines = vec![ExportLine::Header(ExportHeader {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        node: "cuta".into(),
        exported_at: "2026-11-24T00:00:00.000000000+00:00".into(),
        filtered,
        start_seq: 0,
        start_hash: hex::encode([0u8; 32]),
        head_seq: head.seq,
        head_hash: hex::encode(head.hash),
    })];
    lines.extend(
        entries
            .iter()
            .map(|e| ExportLine::Entry(ExportedEntry::from(e))),
    );
    lines
}

fn verify(lines: &[ExportLine]) -> Result<u64, ExportFault> {
    let mut v = ExportVerifier::new();
    let mut ok = |_: &ExportedCheckpoint| Ok(());
    for l in lines {
        v.push(l, &mut ok)?;
    }
    v.finish().map(|s| s.entries)
}

#[test]
fn export_round_trips_through_json_and_verifies() {
    let c = chain(10);
    let lines = export(&c, false);
    let text: Vec<String> = lines
        .iter()
        .map(|l| serde_json::to_string(l).expect("json"))
        .collect();
    let back: Vec<ExportLine> = text
        .iter()
        .map(|t| serde_json::from_str(t).expect("parse"))
        .collect();
    assert_eq!(back, lines);
    assert_eq!(verify(&back), Ok(10));
    for (e, l) in c.iter().zip(&back[1..]) {
        let ExportLine::Entry(x) = l else {
            panic!("entry line expected")
        };
        assert_eq!(&JournalEntry::try_from(x).expect("reads back"), e);
    }
    assert!(
        text[1].contains("\"time\":\"2026-11-23T10:00:00.500000000+01:00\""),
        "{}",
        text[1]
    );
}

/// Every field of an exported entry, changed, is refused at that entry.
#[test]
fn every_exported_field_changed_is_detected() {
    let c = chain(5);
    let base = export(&c, false);
    type Edit = fn(&mut serde_json::Value);
    let edits: Vec<(&str, Edit)> = vec![
        ("seq", |v| v["seq"] = 9.into()),
        ("time", |v| {
            v["time"] = "2026-11-23T10:00:03.500000000+01:00".into()
        }),
        ("time_unix", |v| {
            v["time_unix"] = (v["time_unix"].as_i64().unwrap_or(0) + 1).into()
        }),
        ("time_nanos", |v| v["time_nanos"] = 1.into()),
        ("time_offset", |v| v["time_offset"] = 0.into()),
        ("node", |v| v["node"] = "nccn".into()),
        ("actor", |v| v["actor"] = "mallory".into()),
        ("role", |v| v["role"] = "dpo".into()),
        ("operation", |v| v["operation"] = "erase".into()),
        ("record_id", |v| v["record_id"] = serde_json::Value::Null),
        ("class", |v| v["class"] = "rectification".into()),
        ("subject_ref", |v| {
            v["subject_ref"] = format!("{:064x}", 7).into()
        }),
        ("counterpart", |v| v["counterpart"] = "nccn".into()),
        ("purpose", |v| v["purpose"] = "curiosity".into()),
        ("justification", |v| v["justification"] = "none".into()),
        ("legal_basis", |v| v["legal_basis"] = "none".into()),
        ("outcome", |v| v["outcome"] = "failed".into()),
        ("prev_hash", |v| {
            v["prev_hash"] = hex::encode([1u8; 32]).into()
        }),
        ("hash", |v| v["hash"] = hex::encode([2u8; 32]).into()),
        ("hash upper case", |v| {
            v["hash"] = v["hash"].as_str().unwrap_or("").to_uppercase().into()
        }),
    ];
    for (name, edit) in edits {
        let mut lines = base.clone();
        let mut v = serde_json::to_value(&lines[3]).expect("json");
        edit(&mut v);
        lines[3] = serde_json::from_value(v).expect("still an export line");
        let err = verify(&lines).expect_err(name);
        let text = err.to_string();
        assert!(text.starts_with("line 4: "), "{name}: {text}");
        // The entry is named by its sequence number (seq 3, or 9 when seq itself changed).
        assert!(
            text.contains("journal entry 3") || text.contains("journal entry 9"),
            "{name}: {text}"
        );
    }
}

#[test]
fn removed_truncated_and_extended_exports_are_refused() {
    let c = chain(6);
    let mut removed = export(&c, false);
    removed.remove(3);
    let e = verify(&removed).expect_err("removed").to_string();
    assert!(e.contains("journal entry 4: seq is not 3"), "{e}");

    let mut truncated = export(&c, false);
    truncated.pop();
    let e = verify(&truncated).expect_err("truncated").to_string();
    assert!(e.contains("export ends at entry 5"), "{e}");

    // A filtered export tolerates gaps, but each entry's own hash is still checked.
    let mut filtered = export(&c, true);
    filtered.remove(3);
    assert_eq!(verify(&filtered), Ok(5));
    let mut v = serde_json::to_value(&filtered[3]).expect("json");
    v["actor"] = "mallory".into();
    filtered[3] = serde_json::from_value(v).expect("line");
    assert!(verify(&filtered).is_err());

    // No header, or two.
    assert!(verify(&export(&c, false)[1..]).is_err());
    let mut two = export(&c, false);
    two.insert(2, two[0].clone());
    assert!(verify(&two).is_err());
    assert!(ExportVerifier::new().finish().is_err());
}

#[test]
fn filter_selects_by_each_field() {
    let c = chain(8);
    let count = |f: &JournalFilter| c.iter().filter(|e| f.matches(e)).count();
    assert_eq!(count(&JournalFilter::default()), 8);
    assert!(JournalFilter::default().is_empty());
    let f = JournalFilter {
        actor: Some("dpo1".into()),
        ..Default::default()
    };
    assert_eq!(count(&f), 4);
    let f = JournalFilter {
        operation: Some(Operation::Receive),
        ..Default::default()
    };
    assert_eq!(count(&f), 3);
    let f = JournalFilter {
        record_id: c[1].record_id,
        peer: Some(node("adolescence")),
        ..Default::default()
    };
    assert_eq!(count(&f), 2);
    let f = JournalFilter {
        since: Some(c[2].time),
        until: Some(c[5].time),
        ..Default::default()
    };
    assert_eq!(count(&f), 3);
    let f = JournalFilter {
        subject_ref: Some(format!("{:064x}", 1)),
        peer: Some(node("nccn")),
        ..Default::default()
    };
    assert_eq!(count(&f), 0);
}

#[test]
fn checkpoints_are_signed_cosigned_and_checked_against_the_journal() {
    let fed = Fed::new();
    let cuta = Fed::signer(&fed.ed, "cuta");
    let adolescence = Fed::signer(&fed.p256, "adolescence");
    let c = chain(120);
    verify_chain(&c).expect("chain");
    let cp = Checkpoint::new(node("cuta"), ChainHead::of(&c[119]), NOW);
    let env = cp.seal(&cuta).expect("seal");
    assert_eq!(Checkpoint::open(&env, &fed.trust, NOW), Ok(cp.clone()));
    // Offline, with the signing certificate's key only.
    let key = SigningKey::from_pkcs8_der(&fed.ed.key).expect("key");
    assert_eq!(
        Checkpoint::open_with_key(&env, SigningAlgorithm::Ed25519, key.public_key()),
        Ok(cp.clone())
    );
    // Another node's key does not open it.
    let nccn = fed
        .ca
        .node(pki::Alg::Ed25519, &pki::NodeOpts::signing("nccn"));
    let other = SigningKey::from_pkcs8_der(&nccn.key).expect("key");
    assert!(matches!(
        Checkpoint::open_with_key(&env, SigningAlgorithm::Ed25519, other.public_key()),
        Err(CheckpointError::Open(_))
    ));
    // A node cannot sign another's checkpoint.
    assert!(matches!(
        Checkpoint::new(node("adolescence"), ChainHead::genesis(), NOW).seal(&cuta),
        Err(CheckpointError::WrongSigner { .. })
    ));

    // adolescence countersigns; cuta cannot countersign its own.
    let (seen, cosigned) =
        Cosigned::cosign(&env, None, &fed.trust, NOW, &adolescence).expect("cosign");
    assert_eq!(seen, cp);
    let (cs, inner) = Cosigned::open(&cosigned, &fed.trust, NOW).expect("open cosigned");
    assert_eq!(cs.cosigner.as_str(), "adolescence");
    assert_eq!(inner, cp);
    assert!(matches!(
        Cosigned::cosign(&env, None, &fed.trust, NOW, &cuta),
        Err(CheckpointError::OwnCheckpoint(_))
    ));

    // A forged checkpoint (one byte of the envelope changed) does not open.
    let mut forged = env.clone();
    let at = forged.len() - 70;
    forged[at] ^= 1;
    assert!(Checkpoint::open(&forged, &fed.trust, NOW).is_err());
    assert!(Cosigned::cosign(&forged, None, &fed.trust, NOW, &adolescence).is_err());

    // The peer refuses a later checkpoint with fewer entries or another head.
    let shorter = Checkpoint::new(node("cuta"), ChainHead::of(&c[99]), NOW)
        .seal(&cuta)
        .expect("seal");
    let e = Cosigned::cosign(&shorter, Some(&cp), &fed.trust, NOW, &adolescence)
        .expect_err("truncation refused");
    assert!(e.to_string().contains("truncated"), "{e}");
    let mut other_head = ChainHead::of(&c[119]);
    other_head.hash[0] ^= 1;
    let rewritten = Checkpoint::new(node("cuta"), other_head, NOW);
    assert!(check_successor(&cp, &rewritten).is_err());
    let longer = Checkpoint::new(
        node("cuta"),
        ChainHead {
            seq: 130,
            hash: [3; 32],
        },
        NOW,
    );
    assert_eq!(check_successor(&cp, &longer), Ok(()));

    // The journal against the checkpoint: whole, truncated, rewritten.
    let hash_at = |j: &[JournalEntry]| {
        let j = j.to_vec();
        move |seq: u64| j.iter().find(|e| e.seq == seq).map(|e| e.hash)
    };
    assert_eq!(
        check_journal(&cp, "peer adolescence cosigned", 120, hash_at(&c)),
        Ok(())
    );
    let e = check_journal(&cp, "peer adolescence cosigned", 100, hash_at(&c[..100]))
        .expect_err("truncated");
    assert!(matches!(
        e,
        CheckpointFault::Truncated {
            seq: 120,
            len: 100,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        format!(
            "truncated: peer adolescence cosigned size 120 with head {}, journal has 100 entries",
            hex::encode(c[119].hash)
        )
    );
    // Rewritten from entry 50 on: the chain verifies, the checkpoint does not.
    let mut rewritten = c[..49].to_vec();
    let mut head = ChainHead::of(&c[48]);
    for e in &c[49..] {
        let mut d = JournalDraft::new(e.time, e.node.clone(), "system", e.operation, e.outcome);
        d.justification = Some("rewritten".into());
        let n = JournalEntry::seal(d, head.seq + 1, head.hash);
        head = ChainHead::of(&n);
        rewritten.push(n);
    }
    verify_chain(&rewritten).expect("a rewritten chain is self-consistent");
    let e =
        check_journal(&cp, "node cuta signed", 120, hash_at(&rewritten)).expect_err("rewritten");
    assert!(
        matches!(e, CheckpointFault::Rewritten { seq: 120, .. }),
        "{e}"
    );
}

#[test]
fn checkpoint_payload_refuses_unknown_fields_and_trailing_bytes() {
    let fed = Fed::new();
    let cuta = Fed::signer(&fed.ed, "cuta");
    #[derive(serde::Serialize)]
    struct Extra<'a> {
        v: u64,
        node: &'a str,
        seq: u64,
        #[serde(with = "serde_bytes_32")]
        head: [u8; 32],
        time: &'a str,
        extra: u8,
    }
    mod serde_bytes_32 {
        pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }
    let mut payload = Vec::new();
    ciborium::into_writer(
        &Extra {
            v: 1,
            node: "cuta",
            seq: 1,
            head: [0; 32],
            time: "2026-06-01T12:00:00Z",
            extra: 1,
        },
        &mut payload,
    )
    .expect("cbor");
    let env = pons_core::cose::seal(
        &payload,
        pons_core::checkpoint::CHECKPOINT_CONTENT_TYPE,
        &cuta,
    )
    .expect("seal");
    assert!(matches!(
        Checkpoint::open(&env, &fed.trust, NOW),
        Err(CheckpointError::Decode(_))
    ));
    // A receipt is not a checkpoint: the content type differs.
    let receipt_ct =
        pons_core::cose::seal(b"\xa0", pons_core::cose::RECEIPT_CONTENT_TYPE, &cuta).expect("seal");
    assert!(matches!(
        Checkpoint::open(&receipt_ct, &fed.trust, NOW),
        Err(CheckpointError::Open(_))
    ));
}

mod props {
    use pons_core::journal::{
        canonical_seq_and_prev, ChainHead, ExportLine, ExportVerifier, ExportedCheckpoint,
        ExportedEntry, JournalDraft, JournalEntry, Operation, Outcome,
    };
    use pons_core::NodeId;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(".{0,40}")
    }

    prop_compose! {
        fn entry()(
            secs in -2_000_000_000i64..4_000_000_000i64,
            nanos in 0u32..1_000_000_000,
            offset in -86_399i32..86_399,
            actor in ".{0,30}",
            role in opt_text(),
            op in 0usize..13,
            record in proptest::option::of(any::<u128>()),
            class in opt_text(),
            subject in opt_text(),
            counterpart in proptest::option::of("[a-z][a-z0-9-]{0,20}"),
            purpose in opt_text(),
            justification in opt_text(),
            legal in opt_text(),
            outcome in 0usize..3,
            seq in 1u64..u64::MAX,
            prev in any::<[u8; 32]>(),
        ) -> Option<JournalEntry> {
            let time = time::OffsetDateTime::from_unix_timestamp(secs).ok()?
                .replace_nanosecond(nanos).ok()?
                .to_offset(time::UtcOffset::from_whole_seconds(offset).ok()?);
            let mut d = JournalDraft::new(
                time,
                NodeId::new("cuta").ok()?,
                actor,
                Operation::ALL[op],
                [Outcome::Success, Outcome::Refused, Outcome::Failed][outcome],
            );
            d.role = role;
            d.record_id = record.map(Uuid::from_u128);
            d.class = class;
            d.subject_ref = subject;
            d.counterpart = match counterpart {
                Some(c) => Some(NodeId::new(&c).ok()?),
                None => None,
            };
            d.purpose = purpose;
            d.justification = justification;
            d.legal_basis = legal;
            Some(JournalEntry::seal(d, seq, prev))
        }
    }

    proptest! {
        #[test]
        fn canonical_and_export_forms_round_trip(e in entry()) {
            let Some(e) = e else { return Ok(()) };
            let b = e.canonical_bytes();
            prop_assert_eq!(JournalEntry::from_canonical(&b, e.hash), Ok(e.clone()));
            prop_assert_eq!(canonical_seq_and_prev(&b), Some((e.seq, e.prev_hash)));
            let x = ExportedEntry::from(&e);
            let json = serde_json::to_string(&x).expect("json");
            let back: ExportedEntry = serde_json::from_str(&json).expect("parse");
            prop_assert_eq!(JournalEntry::try_from(&back), Ok(e));
        }

        #[test]
        fn canonical_decoder_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = JournalEntry::from_canonical(&bytes, [0; 32]);
            let _ = canonical_seq_and_prev(&bytes);
        }

        /// A valid export with one byte changed never panics the verifier, and never
        /// verifies unless the change left every line's meaning intact.
        #[test]
        fn export_verifier_is_total_on_altered_exports(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let text: Vec<String> = super::export(&super::chain(3), false)
                .iter()
                .map(|l| serde_json::to_string(l).expect("json"))
                .collect();
            let mut all = text.join("\n").into_bytes();
            let i = at.index(all.len());
            all[i] = byte;
            let mut v = ExportVerifier::new();
            let mut ok = |_: &ExportedCheckpoint| Ok(());
            let mut failed = false;
            for l in String::from_utf8_lossy(&all).lines() {
                match serde_json::from_str::<ExportLine>(l) {
                    Ok(line) => failed |= v.push(&line, &mut ok).is_err(),
                    Err(_) => failed = true,
                }
            }
            let verified = !failed && v.finish().is_ok();
            if verified {
                // Only changes that leave the parsed lines equal may pass (e.g. JSON
                // whitespace or an escape of the same character).
                // The header's exported_at is information, covered by nothing.
                let reparsed: Vec<ExportLine> = String::from_utf8_lossy(&all)
                    .lines()
                    .map(|l| match serde_json::from_str(l).expect("parsed above") {
                        ExportLine::Header(mut h) => {
                            h.exported_at = "2026-11-24T00:00:00.000000000+00:00".into();
                            ExportLine::Header(h)
                        }
                        other => other,
                    })
                    .collect();
                prop_assert_eq!(reparsed, super::export(&super::chain(3), false));
            }
            let _ = ChainHead::genesis();
        }
    }
}
