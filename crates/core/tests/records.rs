//! Reports and records: the examples validate, and each bad report is refused with the
//! field and rule named.

use pons_core::class::{Body, MinorRiskReport};
use pons_core::pseudonym::{PseudonymKey, SubjectIdentity, SubjectRef};
use pons_core::record::{DecodeError, Marking, Record, RecordId, Tlp, MAX_RECORD_BYTES};
use pons_core::validate::{Draft, DraftContext, Rule, ValidationErrors, MAX_REPORT_BYTES};
use pons_core::NodeId;
use serde_json::{json, Value};
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};

const MINOR: &str = include_str!("../../../config/examples/minor-risk-report.json");
const PROTECTION: &str = include_str!("../../../config/examples/protection-file.json");

const NOW: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

fn key() -> PseudonymKey {
    PseudonymKey::from_bytes(&[42; 32]).unwrap()
}

fn ctx(key: &PseudonymKey) -> DraftContext<'_> {
    DraftContext {
        id: RecordId::new_v7(NOW, [7; 10]),
        from: NodeId::new("adolescence").unwrap(),
        to: NodeId::new("cuta").unwrap(),
        now: NOW,
        purpose: None,
        justification: None,
        pseudonym_key: key,
        subject_ref: None,
        default_review_by: Some(date!(2027 - 11 - 23)),
        default_erase_by: Some(date!(2031 - 11 - 23)),
        clock_skew: Duration::minutes(5),
    }
}

fn submit(class: &str, json: &str) -> Result<Record, ValidationErrors> {
    let k = key();
    Draft::parse_json(class, json.as_bytes())?.into_record(&ctx(&k))
}

/// The example with one change applied.
fn edit(json: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(json).unwrap();
    f(&mut v);
    serde_json::to_string(&v).unwrap()
}

fn minor(f: impl FnOnce(&mut Value)) -> Result<Record, ValidationErrors> {
    submit("minor-risk-report", &edit(MINOR, f))
}

/// Asserts that `res` failed with a problem on `field` breaking `rule`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    res: Result<T, ValidationErrors>,
    field: &str,
    rule: Rule,
) -> ValidationErrors {
    let errs = res.expect_err("must be refused");
    assert!(
        errs.has(field, rule),
        "expected {field} [{rule}], got:\n{errs}"
    );
    errs
}

fn message(errs: &ValidationErrors, field: &str) -> String {
    errs.errors()
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

#[test]
fn minor_example_validates() {
    let r = submit("minor-risk-report", MINOR).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.class.as_str(), "minor-risk-report");
    assert_eq!(r.marking, Marking::SensitiveUnclassified);
    assert_eq!(r.tlp, Tlp::AmberStrict);
    assert_eq!(r.created, NOW);
    assert_eq!(
        r.review_by,
        date!(2027 - 11 - 23),
        "the example gives no dates: the policy's default applies"
    );
    let Body::MinorRiskReport(MinorRiskReport {
        subject,
        statements,
        ..
    }) = &r.body
    else {
        panic!("wrong body {:?}", r.body);
    };
    assert_eq!(statements.len(), 3);
    let nrn = subject.national_register_number.as_ref().unwrap();
    assert_eq!(nrn.digits(), "10051499820");
    assert_eq!(r.subject_ref, key().subject_ref(&SubjectIdentity::Nrn(nrn)));
    // What the receiver does: decode and validate again.
    let bytes = r.to_cbor();
    let back = Record::from_cbor(&bytes).unwrap();
    assert_eq!(back, r);
    back.validate(NOW + Duration::hours(1), Duration::minutes(5))
        .unwrap();
}

#[test]
fn report_dates_win_over_the_policy_defaults() {
    let r = minor(|v| {
        v["review_by"] = json!("2027-05-31");
        v["erase_by"] = json!("2031-11-30");
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.review_by, date!(2027 - 05 - 31));
    assert_eq!(r.erase_by, date!(2031 - 11 - 30));
}

#[test]
fn protection_example_validates() {
    let r = submit("protection-file", PROTECTION).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.tlp, Tlp::Amber);
    assert_eq!(
        r.review_by,
        date!(2027 - 11 - 23),
        "default from the context"
    );
    assert_eq!(Record::from_cbor(&r.to_cbor()).unwrap(), r);
}

#[test]
fn missing_fields_are_named_all_at_once() {
    let errs = assert_refused(
        minor(|v| {
            v["body"]["subject"]
                .as_object_mut()
                .unwrap()
                .remove("date_of_birth");
            v.as_object_mut().unwrap().remove("legal_basis");
            v["body"]["statements"][1]
                .as_object_mut()
                .unwrap()
                .remove("kind");
            v["tlp"] = json!("TLP:WHITE");
        }),
        "body.subject.date_of_birth",
        Rule::Required,
    );
    assert!(errs.has("legal_basis", Rule::Required), "{errs}");
    assert!(
        errs.has("body.statements[1].kind", Rule::Required),
        "{errs}"
    );
    assert!(errs.has("tlp", Rule::Tlp), "{errs}");
    assert_eq!(errs.len(), 4, "{errs}");
    assert!(
        errs.to_string()
            .contains("body.subject.date_of_birth: is required [required]"),
        "{errs}"
    );
}

#[test]
fn adult_subject_is_refused() {
    let errs = assert_refused(
        minor(|v| {
            v["body"]["subject"]["date_of_birth"] = json!("2001-03-04");
            v["body"]["subject"]
                .as_object_mut()
                .unwrap()
                .remove("national_register_number");
        }),
        "body.subject.date_of_birth",
        Rule::Minor,
    );
    assert_eq!(
        message(&errs, "body.subject.date_of_birth"),
        "2001-03-04 is not under 18 on 2026-11-23"
    );
    assert_eq!(
        errs.errors()[0].to_string(),
        "body.subject.date_of_birth: 2001-03-04 is not under 18 on 2026-11-23 [minor]"
    );
    // The 18th birthday itself is refused, the day before accepted.
    assert_refused(
        minor(|v| {
            v["body"]["subject"]["date_of_birth"] = json!("2008-11-23");
            v["body"]["subject"]
                .as_object_mut()
                .unwrap()
                .remove("national_register_number");
        }),
        "body.subject.date_of_birth",
        Rule::Minor,
    );
    minor(|v| {
        v["body"]["subject"]["date_of_birth"] = json!("2008-11-24");
        v["body"]["subject"]
            .as_object_mut()
            .unwrap()
            .remove("national_register_number");
    })
    .unwrap();
}

#[test]
fn every_classified_marking_is_refused() {
    for m in [
        "RESTREINT",
        "restreint ue",
        "BEPERKT",
        "Restricted",
        "CONFIDENTIEL",
        "Confidentiel Défense",
        "VERTROUWELIJK",
        "confidential",
        "SECRET",
        "secret",
        "GEHEIM",
        "TRES SECRET",
        "TRÈS SECRET",
        "très secret",
        "Tres-Secret",
        "ZEER GEHEIM",
        "zeer_geheim",
        "TOP SECRET",
        "TOP-SECRET",
        "topsecret",
        "NATO SECRET",
        "EU RESTRICTED",
        "Tre\u{300}s  Secret",
    ] {
        let errs = assert_refused(
            minor(|v| v["marking"] = json!(m)),
            "marking",
            Rule::Classified,
        );
        let msg = message(&errs, "marking");
        assert!(
            msg.contains("classified information must not transit Pons"),
            "{m}: {msg}"
        );
    }
    // Not classified, but not a marking Pons knows either.
    let errs = assert_refused(
        minor(|v| v["marking"] = json!("public")),
        "marking",
        Rule::Marking,
    );
    assert!(!errs.has("marking", Rule::Classified));
    minor(|v| v["marking"] = json!("Unclassified")).unwrap();
}

#[test]
fn tlp_white_is_refused_with_the_rename() {
    for t in ["TLP:WHITE", "white", "tlp:White"] {
        let errs = assert_refused(minor(|v| v["tlp"] = json!(t)), "tlp", Rule::Tlp);
        assert!(
            message(&errs, "tlp").contains("TLP 2.0 renamed WHITE to CLEAR"),
            "{errs}"
        );
    }
    assert_refused(minor(|v| v["tlp"] = json!("TLP:ORANGE")), "tlp", Rule::Tlp);
    assert_eq!(minor(|v| v["tlp"] = json!("red")).unwrap().tlp, Tlp::Red);
}

#[test]
fn future_dates_are_refused() {
    let errs = assert_refused(
        minor(|v| {
            v["body"]["subject"]["date_of_birth"] = json!("2026-11-24");
            v["body"]["subject"]
                .as_object_mut()
                .unwrap()
                .remove("national_register_number");
            v["body"]["statements"][0]["date"] = json!("2027-01-01");
        }),
        "body.subject.date_of_birth",
        Rule::FutureDate,
    );
    assert!(
        errs.has("body.statements[0].date", Rule::FutureDate),
        "{errs}"
    );
    // Today is fine.
    minor(|v| v["body"]["statements"][0]["date"] = json!("2026-11-23")).unwrap();

    // A receiver refuses a record created beyond its clock-skew allowance.
    let r = submit("minor-risk-report", MINOR).unwrap();
    let early = NOW - Duration::minutes(10);
    let errs = assert_refused(
        r.validate(early, Duration::minutes(5)),
        "created",
        Rule::FutureDate,
    );
    assert_eq!(errs.len(), 1, "{errs}");
    r.validate(NOW - Duration::minutes(4), Duration::minutes(5))
        .unwrap();
}

#[test]
fn oversize_texts_and_lists_are_refused() {
    assert_refused(
        minor(|v| v["body"]["statements"][0]["text"] = json!("x".repeat(8_001))),
        "body.statements[0].text",
        Rule::Length,
    );
    minor(|v| v["body"]["statements"][0]["text"] = json!("é".repeat(8_000))).unwrap();
    assert_refused(
        minor(|v| v["body"]["subject"]["family_name"] = json!("x".repeat(201))),
        "body.subject.family_name",
        Rule::Length,
    );
    let st = json!({"kind": "fact", "text": "x"});
    assert_refused(
        minor(|v| v["body"]["statements"] = Value::Array(vec![st; 201])),
        "body.statements",
        Rule::Count,
    );
    assert_refused(
        minor(|v| v["body"]["statements"] = json!([])),
        "body.statements",
        Rule::Required,
    );
    let big = edit(MINOR, |v| {
        v["_padding"] = json!(" ".repeat(MAX_REPORT_BYTES))
    });
    let errs = assert_refused(submit("minor-risk-report", &big), "report", Rule::Size);
    assert_eq!(errs.len(), 1);
}

#[test]
fn bad_national_register_numbers_are_refused() {
    assert_refused(
        minor(|v| v["body"]["subject"]["national_register_number"] = json!("10.05.14-998.21")),
        "body.subject.national_register_number",
        Rule::NrnChecksum,
    );
    assert_refused(
        minor(|v| v["body"]["subject"]["national_register_number"] = json!("10.05.14-998")),
        "body.subject.national_register_number",
        Rule::NrnFormat,
    );
    // The pre-2000 check number of the same digits is a person born in 1910.
    assert_refused(
        minor(|v| v["body"]["subject"]["national_register_number"] = json!("10051499888")),
        "body.subject.national_register_number",
        Rule::NrnDateOfBirth,
    );
}

#[test]
fn assessments_name_their_authority_and_facts_do_not() {
    assert_refused(
        minor(|v| {
            v["body"]["statements"][2]
                .as_object_mut()
                .unwrap()
                .remove("assessing_authority");
        }),
        "body.statements[2].assessing_authority",
        Rule::AssessingAuthority,
    );
    assert_refused(
        minor(|v| v["body"]["statements"][0]["assessing_authority"] = json!("someone")),
        "body.statements[0].assessing_authority",
        Rule::AssessingAuthority,
    );
    assert_refused(
        minor(|v| v["body"]["statements"][1]["kind"] = json!("rumour")),
        "body.statements[1].kind",
        Rule::Choice,
    );
}

#[test]
fn control_characters_are_refused() {
    assert_refused(
        minor(|v| v["body"]["subject"]["given_names"] = json!("Noor\u{7}")),
        "body.subject.given_names",
        Rule::ControlCharacter,
    );
    assert_refused(
        minor(|v| v["body"]["subject"]["given_names"] = json!("Noor\nAnna")),
        "body.subject.given_names",
        Rule::ControlCharacter,
    );
    assert_refused(
        minor(|v| v["body"]["statements"][0]["text"] = json!("safe \u{202e}txt.exe")),
        "body.statements[0].text",
        Rule::ControlCharacter,
    );
    // Line feeds are fine in prose.
    minor(|v| v["body"]["statements"][0]["text"] = json!("line one\nline two")).unwrap();
}

#[test]
fn shape_errors_are_named() {
    assert_refused(
        minor(|v| v["body"]["risk_level"] = json!(3)),
        "body.risk_level",
        Rule::Type,
    );
    assert_refused(
        minor(|v| v["body"]["subject"] = json!("Noor")),
        "body.subject",
        Rule::Type,
    );
    assert_refused(
        minor(|v| v["body"]["subjet"] = json!({})),
        "body.subjet",
        Rule::UnknownField,
    );
    assert_refused(
        minor(|v| v["review_by"] = json!("31/05/2027")),
        "review_by",
        Rule::Date,
    );
    assert_refused(
        minor(|v| v["class"] = json!("protection-file")),
        "class",
        Rule::Class,
    );
    assert_refused(
        submit("minor-risk-report", "{\"marking\": "),
        "report",
        Rule::Syntax,
    );
    assert_refused(submit("minor-risk-report", "[1, 2]"), "report", Rule::Type);
    assert_refused(submit("weather-report", MINOR), "class", Rule::Choice);
    // A key given twice is ambiguous, however deep.
    let twice = MINOR.replacen(
        "\"marking\": \"sensitive-unclassified\",",
        "\"marking\": \"SECRET\", \"marking\": \"unclassified\",",
        1,
    );
    assert_ne!(twice, MINOR);
    let errs = assert_refused(submit("minor-risk-report", &twice), "report", Rule::Syntax);
    assert!(
        errs.to_string().contains("duplicate key \"marking\""),
        "{errs}"
    );
    let twice = MINOR.replacen(
        "\"kind\": \"fact\",",
        "\"kind\": \"fact\", \"kind\": \"fact\",",
        1,
    );
    assert_refused(submit("minor-risk-report", &twice), "report", Rule::Syntax);
    // A byte-order mark is tolerated.
    submit("minor-risk-report", &format!("\u{feff}{MINOR}")).unwrap();
    // Comments at any depth are ignored, and so is a matching class.
    minor(|v| {
        v["body"]["author"]["_note"] = json!({"anything": [1, 2]});
        v["class"] = json!("minor-risk-report");
    })
    .unwrap();
}

#[test]
fn problems_are_counted_beyond_the_cap() {
    let st = json!({"kind": "fact"});
    let errs = minor(|v| v["body"]["statements"] = Value::Array(vec![st; 150])).unwrap_err();
    assert_eq!(errs.len(), 150, "every missing text is counted");
    assert_eq!(errs.errors().len(), pons_core::validate::MAX_ERRORS);
    assert!(errs.to_string().ends_with("and 50 more problems"), "{errs}");
}

#[test]
fn dates_must_be_in_order() {
    assert_refused(
        minor(|v| v["erase_by"] = json!("2027-01-01")),
        "erase_by",
        Rule::DateOrder,
    );
    assert_refused(
        minor(|v| v["review_by"] = json!("2026-11-23")),
        "review_by",
        Rule::DateOrder,
    );
}

#[test]
fn purpose_and_justification_come_from_report_or_flags() {
    let no_purpose = edit(MINOR, |v| {
        v.as_object_mut().unwrap().remove("purpose");
    });
    let k = key();
    let draft = Draft::parse_json("minor-risk-report", no_purpose.as_bytes()).unwrap();
    let errs = assert_refused(
        draft.clone().into_record(&ctx(&k)),
        "purpose",
        Rule::Required,
    );
    assert!(message(&errs, "purpose").contains("--purpose"));
    let mut c = ctx(&k);
    c.purpose = Some("flag purpose".into());
    c.justification = Some("flag justification".into());
    let r = draft.into_record(&c).unwrap();
    assert_eq!(r.purpose, "flag purpose");
    assert_eq!(
        r.justification, "flag justification",
        "the flag overrides the report"
    );
}

#[test]
fn into_record_reports_body_rules_with_missing_envelope_fields() {
    let json = edit(MINOR, |v| {
        v.as_object_mut().unwrap().remove("purpose");
        v["body"]["statements"][0]["text"] = json!("");
    });
    let k = key();
    let mut c = ctx(&k);
    c.default_erase_by = None;
    let draft = Draft::parse_json("minor-risk-report", json.as_bytes()).unwrap();
    let mut c2 = c.clone();
    c2.purpose = None;
    let errs = draft.into_record(&c2).unwrap_err();
    assert!(errs.has("purpose", Rule::Required), "{errs}");
    assert!(
        errs.has("body.statements[0].text", Rule::Required),
        "{errs}"
    );
}

#[test]
fn protection_file_rules() {
    let pf = |f: &dyn Fn(&mut Value)| submit("protection-file", &edit(PROTECTION, f));
    assert_refused(
        pf(&|v| {
            v["body"]["role"] = json!("other");
            v["body"]
                .as_object_mut()
                .unwrap()
                .remove("role_description");
        }),
        "body.role_description",
        Rule::Required,
    );
    assert_refused(
        pf(&|v| {
            let p = v["body"]["protected_person"].as_object_mut().unwrap();
            p.remove("date_of_birth");
            p.remove("national_register_number");
        }),
        "body.protected_person.date_of_birth",
        Rule::Required,
    );
    assert_refused(
        pf(&|v| v["body"]["threat_level"] = json!(5)),
        "body.threat_level",
        Rule::Choice,
    );
    assert_refused(
        pf(&|v| v["body"]["measures"][1] = json!("moat")),
        "body.measures[1]",
        Rule::Choice,
    );
    assert_refused(
        pf(&|v| v["body"]["review_date"] = json!("2026-01-01")),
        "body.review_date",
        Rule::DateOrder,
    );
    assert_refused(
        pf(&|v| v["body"]["author"]["email"] = json!("nobody")),
        "body.author.email",
        Rule::Format,
    );
    // An adult is fine here.
    pf(&|v| v["body"]["measures"] = json!(["Close_Protection"])).unwrap();
}

fn follow_up(id: &RecordId) -> String {
    json!({
        "marking": "sensitive-unclassified",
        "tlp": "TLP:AMBER",
        "legal_basis": "cooperation agreement, art. 5",
        "purpose": "threat assessment",
        "justification": "the report does not say which school",
        "body": {"refers_to": id.to_string(), "question": "Which school does the subject attend?"}
    })
    .to_string()
}

#[test]
fn referring_classes_take_the_subject_from_the_caller() {
    let original = submit("minor-risk-report", MINOR).unwrap();
    let k = key();
    let draft = Draft::parse_json("follow-up-request", follow_up(&original.id).as_bytes()).unwrap();
    assert_refused(
        draft.clone().into_record(&ctx(&k)),
        "subject_ref",
        Rule::Required,
    );
    let mut c = ctx(&k);
    c.subject_ref = Some(original.subject_ref);
    let r = draft.into_record(&c).unwrap();
    assert_eq!(r.subject_ref, original.subject_ref);
    assert_eq!(Record::from_cbor(&r.to_cbor()).unwrap(), r);

    let bad_id = follow_up(&original.id).replace(
        &original.id.to_string(),
        "6ba7b810-9dad-41d1-80b4-00c04fd430c8",
    );
    assert_refused(
        submit("follow-up-request", &bad_id),
        "body.refers_to",
        Rule::Format,
    );

    let notice = json!({
        "marking": "unclassified", "tlp": "clear", "legal_basis": "law of 30 July 2018, art. 39",
        "purpose": "erasure", "justification": "retention ended",
        "body": {"record": original.id.to_string(), "ground": "other"}
    });
    assert_refused(
        Draft::parse_json("erasure-notice", notice.to_string().as_bytes())
            .unwrap()
            .into_record(&c),
        "body.note",
        Rule::Required,
    );
}

#[test]
fn rectification_carries_a_checked_body() {
    let original = submit("minor-risk-report", MINOR).unwrap();
    let body: Value = serde_json::from_str::<Value>(MINOR).unwrap()["body"].clone();
    let rect = |body: Value, class: &str| {
        json!({
            "marking": "sensitive-unclassified", "tlp": "TLP:AMBER+STRICT",
            "legal_basis": "cooperation agreement, art. 4", "purpose": "threat assessment",
            "justification": "wrong school year in statement 1",
            "body": {"supersedes": original.id.to_string(), "reason": "typo", "class": class, "body": body}
        })
        .to_string()
    };
    let r = submit("rectification", &rect(body.clone(), "minor-risk-report")).unwrap();
    assert_eq!(
        r.subject_ref, original.subject_ref,
        "same subject, same pseudonym"
    );
    assert_eq!(Record::from_cbor(&r.to_cbor()).unwrap(), r);

    let mut adult = body.clone();
    adult["subject"]["date_of_birth"] = json!("1990-01-01");
    adult["subject"]
        .as_object_mut()
        .unwrap()
        .remove("national_register_number");
    assert_refused(
        submit("rectification", &rect(adult, "minor-risk-report")),
        "body.body.subject.date_of_birth",
        Rule::Minor,
    );
    assert_refused(
        submit("rectification", &rect(body, "follow-up-request")),
        "body.class",
        Rule::Class,
    );
}

#[test]
fn receivers_check_the_envelope() {
    let mut r = submit("minor-risk-report", MINOR).unwrap();
    r.class = pons_core::ClassName::ProtectionFile;
    r.v = 2;
    r.to = r.from.clone();
    let errs = r.validate(NOW, Duration::ZERO).unwrap_err();
    assert!(errs.has("class", Rule::Class), "{errs}");
    assert!(errs.has("v", Rule::Version), "{errs}");
    assert!(errs.has("to", Rule::Node), "{errs}");
}

#[test]
fn decoder_limits() {
    let r = submit("minor-risk-report", MINOR).unwrap();
    let mut bytes = r.to_cbor();
    bytes.push(0);
    assert_eq!(
        Record::from_cbor(&bytes),
        Err(DecodeError::TrailingBytes(1))
    );
    assert!(matches!(
        Record::from_cbor(&vec![0; MAX_RECORD_BYTES + 1]),
        Err(DecodeError::TooLarge(_))
    ));
    // Text strings and maps that claim 2^63 bytes or entries.
    for claim in [
        &[0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        &[0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[
            0xa1, 0x61, 0x76, 0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    ] {
        assert!(matches!(
            Record::from_cbor(claim),
            Err(DecodeError::Cbor(_))
        ));
    }
    // Deep nesting.
    assert!(matches!(
        Record::from_cbor(&[0x81; 10_000]),
        Err(DecodeError::Cbor(_))
    ));
    // A v4 UUID as record id.
    let text = String::from_utf8_lossy(&r.to_cbor()).into_owned();
    assert!(text.contains(&r.id.to_string()));
    let swapped = r.to_cbor();
    let pos = swapped
        .windows(36)
        .position(|w| w == r.id.to_string().as_bytes())
        .unwrap();
    let mut bad = swapped.clone();
    bad[pos..pos + 36].copy_from_slice(b"6ba7b810-9dad-41d1-80b4-00c04fd430c8");
    assert!(matches!(Record::from_cbor(&bad), Err(DecodeError::Cbor(m)) if m.contains("uuidv7")));
}

#[test]
fn subject_ref_text_form() {
    let r = submit("minor-risk-report", MINOR).unwrap();
    let hex = r.subject_ref.to_hex();
    assert_eq!(hex.len(), 64);
    assert_eq!(SubjectRef::parse_hex(&hex), Ok(r.subject_ref));
}
