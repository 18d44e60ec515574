//! Frames: round trips through arbitrary chunking, and no panic on arbitrary bytes.

use proptest::prelude::*;

use pons_proto::{Frame, FrameDecoder, FrameError, RejectCode};

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|envelope| Frame::Deliver { envelope }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|receipt| Frame::Receipt { receipt }),
        (prop::sample::select(RejectCode::ALL.to_vec()), ".{0,80}")
            .prop_map(|(code, reason)| Frame::Reject { code, reason }),
    ]
}

/// Splits `bytes` at the given cut points (taken modulo the length).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip_through_any_chunking(
        frames in prop::collection::vec(frame(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend(f.encode().expect("small frame"));
        }
        let mut decoder = FrameDecoder::default();
        let mut decoded = Vec::new();
        for chunk in chunks(&stream, &cuts) {
            decoder.push(&chunk);
            while let Some(f) = decoder.next_frame().expect("valid stream") {
                decoded.push(f);
            }
        }
        prop_assert_eq!(decoded, frames);
        prop_assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn arbitrary_streams_never_panic_and_stay_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..2_000),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max in 0usize..600,
    ) {
        let mut decoder = FrameDecoder::new(max);
        let mut pushed = 0;
        for chunk in chunks(&bytes, &cuts) {
            pushed += chunk.len();
            decoder.push(&chunk);
            prop_assert!(decoder.buffered() <= pushed);
            loop {
                match decoder.next_frame() {
                    Ok(Some(f)) => prop_assert!(f.encode().expect("small").len() <= max + 4),
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert_eq!(decoder.buffered(), 0);
                        prop_assert_eq!(decoder.next_frame(), Err(e));
                        break;
                    }
                }
            }
        }
        let _ = decoder.finish();
    }

    #[test]
    fn mutated_frames_decode_or_fail_cleanly(
        f in frame(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = f.encode().expect("small frame");
        for (at, x) in flips {
            let i = 4 + at % (bytes.len() - 4);
            bytes[i] ^= x.max(1);
        }
        match Frame::decode_body(&bytes[4..]) {
            // A flip may land in opaque bytes and still decode: then it is a valid frame
            // that round-trips like any other.
            Ok(g) => {
                let again = g.encode().expect("small frame");
                prop_assert_eq!(Frame::decode_body(&again[4..]), Ok(g));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn oversized_prefix_maps_to_frame_too_large() {
    let mut d = FrameDecoder::new(16);
    d.push(&[0x80, 0, 0, 0]);
    let e = d.next_frame().expect_err("over the limit");
    assert_eq!(
        e,
        FrameError::TooLarge {
            len: 0x8000_0000,
            max: 16
        }
    );
    assert_eq!(e.reject_code(), RejectCode::FrameTooLarge);
}
