//! Property tests: round trip over arbitrary payloads; any single changed byte fails.

use std::sync::OnceLock;

use pons_core::cose::{open, seal, RECORD_CONTENT_TYPE};
use proptest::prelude::*;

use crate::fed::Fed;
use crate::pki::NOW;

struct Fixture {
    fed: Fed,
    envelopes: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let fed = Fed::new();
        let envelopes = vec![
            seal(
                b"payload",
                RECORD_CONTENT_TYPE,
                &Fed::signer(&fed.ed, "cuta"),
            )
            .unwrap(),
            seal(
                b"payload",
                RECORD_CONTENT_TYPE,
                &Fed::signer(&fed.p256, "adolescence"),
            )
            .unwrap(),
        ];
        Fixture { fed, envelopes }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..4096), p256 in any::<bool>()) {
        let f = fixture();
        let signer = if p256 {
            Fed::signer(&f.fed.p256, "adolescence")
        } else {
            Fed::signer(&f.fed.ed, "cuta")
        };
        let env = seal(&payload, RECORD_CONTENT_TYPE, &signer).unwrap();
        let opened = open(&env, RECORD_CONTENT_TYPE, &f.fed.trust, NOW).unwrap();
        prop_assert_eq!(opened.payload, payload);
        prop_assert_eq!(opened.signer.as_str(), if p256 { "adolescence" } else { "cuta" });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_changed_byte_fails(which in 0usize..2, index in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let f = fixture();
        let mut env = f.envelopes[which].clone();
        let i = index.index(env.len());
        env[i] ^= mask;
        prop_assert!(open(&env, RECORD_CONTENT_TYPE, &f.fed.trust, NOW).is_err(),
            "byte {} ^ {:#04x} opened", i, mask);
    }
}

/// Every position, a few masks: the exhaustive version of the property above.
#[test]
fn every_byte_position_is_covered() {
    let f = fixture();
    for env in &f.envelopes {
        // The untouched envelope opens: the loop below tests changes, not a broken fixture.
        open(env, RECORD_CONTENT_TYPE, &f.fed.trust, NOW).unwrap();
        for i in 0..env.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = env.clone();
                bad[i] ^= mask;
                assert!(
                    open(&bad, RECORD_CONTENT_TYPE, &f.fed.trust, NOW).is_err(),
                    "byte {i} ^ {mask:#04x} opened"
                );
            }
        }
    }
}

/// Arbitrary bytes never panic the opener.
#[test]
fn garbage_never_panics() {
    let f = fixture();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            let mut tagged = vec![0xd2];
            tagged.extend_from_slice(&bytes);
            prop_assert!(open(&tagged, RECORD_CONTENT_TYPE, &f.fed.trust, NOW).is_err());
            let _ = open(&bytes, RECORD_CONTENT_TYPE, &f.fed.trust, NOW);
            Ok(())
        })
        .unwrap();
}
