//! Property tests: validation and decoding are total, and valid records survive CBOR.

use pons_core::class::{
    Author, Body, ClassName, ErasureGround, ErasureNotice, FollowUpRequest, MinorRiskReport,
    NationalRegisterNumber, Rectification, RiskCategory, RiskLevel, Statement, StatementKind,
    Subject,
};
use pons_core::pseudonym::SubjectRef;
use pons_core::record::{Marking, Record, RecordId, Tlp};
use pons_core::validate::{Draft, DraftContext};
use pons_core::{NodeId, PseudonymKey};
use proptest::prelude::*;
use serde_json::Value;
use time::macros::datetime;
use time::{Date, Duration, OffsetDateTime};

const MINOR: &str = include_str!("../../../config/examples/minor-risk-report.json");
const PROTECTION: &str = include_str!("../../../config/examples/protection-file.json");
const NOW: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

/// Keys the parser knows, so that generated objects reach deep into the validators.
const KEYS: &[&str] = &[
    "marking",
    "tlp",
    "legal_basis",
    "purpose",
    "justification",
    "review_by",
    "erase_by",
    "class",
    "body",
    "subject",
    "given_names",
    "family_name",
    "date_of_birth",
    "national_register_number",
    "case_reference",
    "risk_category",
    "risk_level",
    "statements",
    "kind",
    "text",
    "assessing_authority",
    "date",
    "author",
    "name",
    "role",
    "email",
    "protected_person",
    "role_description",
    "threat_source",
    "threat_level",
    "measures",
    "measures_note",
    "review_date",
    "refers_to",
    "question",
    "supersedes",
    "reason",
    "record",
    "ground",
    "note",
    "_comment",
];

/// Strings the parser gives meaning to.
const WORDS: &[&str] = &[
    "sensitive-unclassified",
    "TRÈS SECRET",
    "TLP:WHITE",
    "TLP:RED",
    "2010-05-14",
    "2999-12-31",
    "0000-01-01",
    "10.05.14-998.20",
    "fact",
    "assessment",
    "other",
    "judge",
    "minor-risk-report",
    "protection-file",
    "rectification",
    "patrols",
    "high",
    "0192f5c4-0000-7000-8000-000000000000",
    "",
    "\u{7}",
    "\u{202e}",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(str::to_owned),
        any::<String>(),
        "[0-9.\\- ]{0,16}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let key = prop_oneof![
            prop::sample::select(KEYS).prop_map(str::to_owned),
            any::<String>()
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer into `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn key() -> PseudonymKey {
    PseudonymKey::from_bytes(&[42; 32]).unwrap()
}

/// Runs the whole submit path and the receiver's check; only panics matter.
fn submit_everything(bytes: &[u8]) {
    let k = key();
    for class in ClassName::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(["", "nope"])
    {
        if let Ok(draft) = Draft::parse_json(class, bytes) {
            let ctx = DraftContext {
                id: RecordId::new_v7(NOW, [1; 10]),
                from: NodeId::new("a").unwrap(),
                to: NodeId::new("b").unwrap(),
                now: NOW,
                purpose: None,
                justification: Some("j".into()),
                pseudonym_key: &k,
                subject_ref: Some(SubjectRef::from_bytes([3; 32])),
                default_review_by: None,
                default_erase_by: Date::from_calendar_date(2030, time::Month::January, 1).ok(),
                clock_skew: Duration::minutes(5),
            };
            if let Ok(r) = draft.into_record(&ctx) {
                let back = Record::from_cbor(&r.to_cbor()).expect("a valid record decodes");
                assert_eq!(back, r);
                back.validate(NOW, Duration::minutes(5))
                    .expect("a valid record stays valid");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validation_is_total_on_arbitrary_json(v in arb_json()) {
        submit_everything(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn validation_is_total_on_mutated_examples(
        which in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        replacement in arb_json(),
    ) {
        let mut v: Value = serde_json::from_str(if which { MINOR } else { PROTECTION }).unwrap();
        let mut ptrs = Vec::new();
        pointers(&v, String::new(), &mut ptrs);
        let p = pick.get(&ptrs).clone();
        if let Some(slot) = v.pointer_mut(&p) {
            *slot = replacement;
        }
        submit_everything(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn validation_and_decoding_are_total_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512)
    ) {
        submit_everything(&bytes);
        if let Ok(r) = Record::from_cbor(&bytes) {
            let _ = r.validate(NOW, Duration::minutes(5));
        }
    }

    #[test]
    fn decoding_is_total_on_corrupted_records(
        r in arb_record(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = r.to_cbor();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(back) = Record::from_cbor(&bytes) {
            let _ = back.validate(NOW, Duration::minutes(5));
        }
    }

    #[test]
    fn valid_records_round_trip_through_cbor(r in arb_record()) {
        prop_assert_eq!(r.validate(r.created, Duration::ZERO), Ok(()));
        let bytes = r.to_cbor();
        let back = Record::from_cbor(&bytes).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(&back.to_cbor(), &bytes, "encoding is deterministic");
        // The size rule counts the same bytes, decoded or encoded again.
        prop_assert_eq!(r.cbor_len(), bytes.len());
        prop_assert_eq!(back.validate_decoded(r.created, Duration::ZERO, bytes.len()), Ok(()));
    }
}

fn arb_text(max: usize) -> impl Strategy<Value = String> {
    // Printable text with accents; never blank.
    proptest::string::string_regex(&format!("[A-Za-z0-9À-ÿ][A-Za-z0-9À-ÿ' .,-]{{0,{max}}}"))
        .unwrap()
}

fn arb_statement() -> impl Strategy<Value = Statement> {
    (
        any::<bool>(),
        arb_text(200),
        arb_text(40),
        prop::option::of(0i64..3000),
    )
        .prop_map(|(assessment, text, authority, days_ago)| Statement {
            kind: if assessment {
                StatementKind::Assessment
            } else {
                StatementKind::Fact
            },
            text,
            assessing_authority: assessment.then_some(authority),
            date: days_ago.map(|d| NOW.date() - Duration::days(d)),
        })
}

fn arb_minor(created: OffsetDateTime) -> impl Strategy<Value = MinorRiskReport> {
    (
        arb_text(30),
        arb_text(30),
        // Under 18 on the record date: at most 17 years of 365 days old.
        0i64..(17 * 365),
        any::<bool>(),
        prop::sample::select(RiskCategory::ALL),
        prop::sample::select(RiskLevel::ALL),
        prop::collection::vec(arb_statement(), 1..6),
        arb_text(40),
    )
        .prop_map(
            move |(given, family, age_days, with_nrn, cat, level, mut statements, name)| {
                let dob = created.date() - Duration::days(age_days);
                for s in &mut statements {
                    // Statement dates are not after the record date.
                    s.date = s.date.map(|d| d.min(created.date()));
                }
                MinorRiskReport {
                    subject: Subject {
                        given_names: given,
                        family_name: family,
                        date_of_birth: dob,
                        national_register_number: with_nrn.then(|| nrn_for(dob)),
                    },
                    case_reference: "CASE-1".into(),
                    risk_category: cat,
                    risk_level: level,
                    statements,
                    author: Author {
                        name,
                        role: "consulent".into(),
                        email: None,
                    },
                }
            },
        )
}

/// A valid national register number for someone born on `dob`.
fn nrn_for(dob: Date) -> NationalRegisterNumber {
    let yy = dob.year() % 100;
    let body = format!("{yy:02}{:02}{:02}123", u8::from(dob.month()), dob.day());
    let mut n: u64 = body.parse().unwrap();
    if dob.year() >= 2000 {
        n += 2_000_000_000;
    }
    NationalRegisterNumber::parse(&format!("{body}{:02}", 97 - n % 97)).unwrap()
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        // 2020-01-01 .. 2030-01-01, with nanoseconds.
        1_577_836_800i64..1_893_456_000,
        0u32..1_000_000_000,
        any::<[u8; 10]>(),
        any::<[u8; 32]>(),
        prop::sample::select(Tlp::ALL.to_vec()),
        any::<bool>(),
        1i64..2000,
        0i64..2000,
    )
        .prop_flat_map(
            |(secs, nanos, rnd, sref, tlp, unclassified, review, keep)| {
                let created = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                    + Duration::nanoseconds(i64::from(nanos));
                let id = RecordId::new_v7(created, rnd);
                let body = prop_oneof![
                    arb_minor(created).prop_map(Body::MinorRiskReport),
                    (arb_minor(created), arb_text(100)).prop_map(move |(m, reason)| {
                        Body::Rectification(Rectification {
                            supersedes: id,
                            reason,
                            body: Box::new(Body::MinorRiskReport(m)),
                        })
                    }),
                    arb_text(300).prop_map(move |question| {
                        Body::FollowUpRequest(FollowUpRequest {
                            refers_to: id,
                            question,
                        })
                    }),
                    (prop::sample::select(ErasureGround::ALL), arb_text(50)).prop_map(
                        move |(ground, note)| {
                            Body::ErasureNotice(ErasureNotice {
                                record: id,
                                ground,
                                note: Some(note),
                            })
                        }
                    ),
                ];
                body.prop_map(move |body| Record {
                    v: 1,
                    id,
                    class: body.class_name(),
                    from: NodeId::new("adolescence").unwrap(),
                    to: NodeId::new("cuta").unwrap(),
                    created,
                    marking: if unclassified {
                        Marking::Unclassified
                    } else {
                        Marking::SensitiveUnclassified
                    },
                    tlp,
                    purpose: "threat assessment".into(),
                    legal_basis: "cooperation agreement, art. 4".into(),
                    justification: "needed".into(),
                    subject_ref: SubjectRef::from_bytes(sref),
                    review_by: created.date() + Duration::days(review),
                    erase_by: created.date() + Duration::days(review + keep),
                    body,
                })
            },
        )
}
