//! The `pons/1` wire format: length-prefixed CBOR frames.
//!
//! A frame is a 4-byte big-endian length `n`, then `n` bytes holding exactly one CBOR map
//! with text keys:
//!
//! | frame     | map                                                      |
//! |-----------|----------------------------------------------------------|
//! | `Deliver` | `{"type": "deliver", "envelope": bstr}`                  |
//! | `Receipt` | `{"type": "receipt", "receipt": bstr}`                   |
//! | `Reject`  | `{"type": "reject", "code": tstr, "reason": tstr}`       |
//!
//! Decoding is strict: an unknown frame type, an unknown or repeated key, a missing field,
//! a value of the wrong type, an unknown reject code or bytes after the map are errors. A
//! later protocol version gets a new ALPN name rather than tolerated extra keys.

use ciborium::Value;

use crate::reject::RejectCode;

/// Default limit on a frame's length (the bytes after the 4-byte prefix): 1 MiB.
///
/// A record envelope carries its body and its signer's certificate chain; that fits with
/// a wide margin, and a receiver never buffers more than this per stream.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;

/// Length of the frame length prefix.
const PREFIX_LEN: usize = 4;

/// Longest piece of peer-supplied text quoted in an error message.
const QUOTE_LEN: usize = 64;

/// One `pons/1` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Sender to receiver: one record, a sealed COSE_Sign1 envelope (opaque here).
    Deliver {
        /// The envelope's bytes, exactly as signed.
        envelope: Vec<u8>,
    },
    /// Receiver to sender: the record is durable in the receiver's inbox.
    Receipt {
        /// The sealed COSE receipt (opaque here).
        receipt: Vec<u8>,
    },
    /// Node to peer: one of the node's signed journal checkpoints (COSE_Sign1, opaque
    /// here), to be countersigned.
    Checkpoint {
        /// The checkpoint envelope.
        checkpoint: Vec<u8>,
    },
    /// Peer to node: the countersignature of a checkpoint (COSE_Sign1, opaque here).
    Cosigned {
        /// The countersignature envelope.
        checkpoint: Vec<u8>,
    },
    /// Receiver to sender: the record was refused.
    Reject {
        /// Why, and whether retrying can help.
        code: RejectCode,
        /// Human-readable detail for the sender's operator; never record content.
        reason: String,
    },
}

/// Why a byte stream is not a valid sequence of `pons/1` frames.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced (or, when encoding, actual) length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// How many bytes of the incomplete frame had arrived.
        buffered: usize,
    },
    /// The frame body is not well-formed CBOR.
    #[error("frame body is not well-formed CBOR: {0}")]
    Cbor(String),
    /// Bytes follow the CBOR map inside the frame.
    #[error("frame body has {0} bytes after its CBOR map")]
    TrailingBytes(usize),
    /// The frame body is CBOR but not a map.
    #[error("frame body must be a CBOR map")]
    NotAMap,
    /// A map key is not a text string.
    #[error("frame map keys must be text strings")]
    KeyNotText,
    /// A map key appears twice.
    #[error("frame key {0:?} appears more than once")]
    DuplicateKey(String),
    /// The `type` key names no `pons/1` frame.
    #[error("frame type {0:?} is not a pons/1 frame type")]
    UnknownType(String),
    /// A key is not defined for this frame type.
    #[error("{frame} frame has unknown key {key:?}")]
    UnknownKey {
        /// The frame type.
        frame: &'static str,
        /// The unknown key.
        key: String,
    },
    /// A required key is absent.
    #[error("{frame} frame is missing key {key:?}")]
    MissingKey {
        /// The frame type, or `frame` when `type` itself is missing.
        frame: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// A value has the wrong CBOR type.
    #[error("frame key {key:?} must be a {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// The CBOR type required.
        expected: &'static str,
    },
    /// A `Reject` frame's code is not a `pons/1` reject code.
    #[error("reject code {0:?} is not a pons/1 reject code")]
    UnknownRejectCode(String),
}

impl FrameError {
    /// The code a receiver answers with when a `Deliver` stream fails to decode.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            FrameError::TooLarge { .. } => RejectCode::FrameTooLarge,
            _ => RejectCode::Malformed,
        }
    }
}

impl Frame {
    /// The frame's type as on the wire: `deliver`, `receipt`, `reject`, `checkpoint` or
    /// `cosigned`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Frame::Deliver { .. } => "deliver",
            Frame::Receipt { .. } => "receipt",
            Frame::Reject { .. } => "reject",
            Frame::Checkpoint { .. } => "checkpoint",
            Frame::Cosigned { .. } => "cosigned",
        }
    }

    /// Encodes the frame with its length prefix, ready to write to a stream.
    ///
    /// Fails only if the body would not fit the 32-bit length prefix; a caller should also
    /// keep frames within the peer's limit ([`DEFAULT_MAX_FRAME_LEN`] unless agreed).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = vec![0; PREFIX_LEN];
        match self {
            Frame::Deliver { envelope } => {
                put_header(&mut out, MAJOR_MAP, 2);
                put_text(&mut out, "type");
                put_text(&mut out, "deliver");
                put_text(&mut out, "envelope");
                put_bytes(&mut out, envelope);
            }
            Frame::Receipt { receipt } => {
                put_header(&mut out, MAJOR_MAP, 2);
                put_text(&mut out, "type");
                put_text(&mut out, "receipt");
                put_text(&mut out, "receipt");
                put_bytes(&mut out, receipt);
            }
            Frame::Checkpoint { checkpoint } | Frame::Cosigned { checkpoint } => {
                put_header(&mut out, MAJOR_MAP, 2);
                put_text(&mut out, "type");
                put_text(&mut out, self.type_name());
                put_text(&mut out, "checkpoint");
                put_bytes(&mut out, checkpoint);
            }
            Frame::Reject { code, reason } => {
                put_header(&mut out, MAJOR_MAP, 3);
                put_text(&mut out, "type");
                put_text(&mut out, "reject");
                put_text(&mut out, "code");
                put_text(&mut out, code.as_str());
                put_text(&mut out, "reason");
                put_text(&mut out, reason);
            }
        }
        let body_len = out.len() - PREFIX_LEN;
        let prefix = u32::try_from(body_len).map_err(|_| FrameError::TooLarge {
            len: body_len as u64,
            max: u64::from(u32::MAX),
        })?;
        out[..PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
        Ok(out)
    }

    /// Decodes one frame body (the bytes after the length prefix).
    pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
        let mut rest = body;
        let value: Value =
            ciborium::de::from_reader(&mut rest).map_err(|e| FrameError::Cbor(e.to_string()))?;
        if !rest.is_empty() {
            return Err(FrameError::TrailingBytes(rest.len()));
        }
        let Value::Map(entries) = value else {
            return Err(FrameError::NotAMap);
        };
        let mut fields: Vec<(String, Value)> = Vec::with_capacity(entries.len().min(4));
        for (key, value) in entries {
            let Value::Text(key) = key else {
                return Err(FrameError::KeyNotText);
            };
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(FrameError::DuplicateKey(quote(&key)));
            }
            fields.push((key, value));
        }
        let mut fields = Fields(fields);
        let frame = match fields.text("frame", "type")?.as_str() {
            "deliver" => Frame::Deliver {
                envelope: fields.bytes("deliver", "envelope")?,
            },
            "receipt" => Frame::Receipt {
                receipt: fields.bytes("receipt", "receipt")?,
            },
            "checkpoint" => Frame::Checkpoint {
                checkpoint: fields.bytes("checkpoint", "checkpoint")?,
            },
            "cosigned" => Frame::Cosigned {
                checkpoint: fields.bytes("cosigned", "checkpoint")?,
            },
            "reject" => {
                let code = fields.text("reject", "code")?;
                let code = code
                    .parse()
                    .map_err(|_| FrameError::UnknownRejectCode(quote(&code)))?;
                Frame::Reject {
                    code,
                    reason: fields.text("reject", "reason")?,
                }
            }
            other => return Err(FrameError::UnknownType(quote(other))),
        };
        if let Some((key, _)) = fields.0.into_iter().next() {
            return Err(FrameError::UnknownKey {
                frame: frame.type_name(),
                key: quote(&key),
            });
        }
        Ok(frame)
    }
}

/// The entries of a frame map not yet taken.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn take(&mut self, frame: &'static str, key: &'static str) -> Result<Value, FrameError> {
        let at = self
            .0
            .iter()
            .position(|(k, _)| k == key)
            .ok_or(FrameError::MissingKey { frame, key })?;
        Ok(self.0.swap_remove(at).1)
    }

    fn text(&mut self, frame: &'static str, key: &'static str) -> Result<String, FrameError> {
        match self.take(frame, key)? {
            Value::Text(t) => Ok(t),
            _ => Err(FrameError::WrongType {
                key,
                expected: "text string",
            }),
        }
    }

    fn bytes(&mut self, frame: &'static str, key: &'static str) -> Result<Vec<u8>, FrameError> {
        match self.take(frame, key)? {
            Value::Bytes(b) => Ok(b),
            _ => Err(FrameError::WrongType {
                key,
                expected: "byte string",
            }),
        }
    }
}

/// Peer-supplied text, shortened for an error message.
fn quote(s: &str) -> String {
    s.chars().take(QUOTE_LEN).collect()
}

const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_MAP: u8 = 5;

/// Writes a CBOR head in its shortest form (RFC 8949 §4.2.1, preferred serialization).
fn put_header(out: &mut Vec<u8>, major: u8, len: usize) {
    let major = major << 5;
    let len = len as u64;
    if len < 24 {
        out.push(major | len as u8);
    } else if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[major | 24, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(len) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_header(out, MAJOR_TEXT, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_header(out, MAJOR_BYTES, b.len());
    out.extend_from_slice(b);
}

/// Splits a byte stream into frames, whatever the chunking of the stream.
///
/// Memory is bounded by what has actually arrived: a length prefix is checked against
/// `max_frame_len` as soon as its 4 bytes are in, and nothing is ever reserved from a
/// prefix, so a hostile prefix of 4 GiB costs nothing. After the first error the decoder
/// drops its buffer, ignores further input and returns that error again: a stream that
/// has broken framing cannot be resynchronised.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_len: usize,
    buf: Vec<u8>,
    /// Offset in `buf` of the next length prefix not yet checked against the limit.
    unchecked: usize,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame_len` bytes (after the prefix).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            buf: Vec::new(),
            unchecked: 0,
            failed: None,
        }
    }

    /// Appends bytes read from the stream.
    ///
    /// Checks every length prefix now complete, so that an oversized frame is refused
    /// before its body is buffered; the error is then returned by [`Self::next_frame`].
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        while let Some(len) = read_prefix(&self.buf[self.unchecked.min(self.buf.len())..]) {
            if let Err(e) = self.check_len(len) {
                self.fail(e);
                return;
            }
            self.unchecked = self
                .unchecked
                .saturating_add(PREFIX_LEN)
                .saturating_add(len as usize);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(len) = read_prefix(&self.buf) else {
            return Ok(None);
        };
        if let Err(e) = self.check_len(len) {
            return Err(self.fail(e));
        }
        let end = PREFIX_LEN + len as usize;
        let Some(body) = self.buf.get(PREFIX_LEN..end) else {
            return Ok(None);
        };
        match Frame::decode_body(body) {
            Ok(frame) => {
                self.buf.drain(..end);
                self.unchecked = self.unchecked.saturating_sub(end);
                Ok(Some(frame))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Checks that the stream ended on a frame boundary; call when the peer finished.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }

    /// How many bytes are buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn check_len(&self, len: u32) -> Result<(), FrameError> {
        if u64::from(len) > self.max_frame_len as u64 {
            Err(FrameError::TooLarge {
                len: u64::from(len),
                max: self.max_frame_len as u64,
            })
        } else {
            Ok(())
        }
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.buf = Vec::new();
        self.unchecked = 0;
        self.failed = Some(e.clone());
        e
    }
}

fn read_prefix(buf: &[u8]) -> Option<u32> {
    let prefix: [u8; PREFIX_LEN] = buf.get(..PREFIX_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(envelope: &[u8]) -> Frame {
        Frame::Deliver {
            envelope: envelope.to_vec(),
        }
    }

    /// A frame body from a CBOR value built by hand, to test what our encoder never writes.
    fn body(value: Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&value, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::Text((*k).into()), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn encoding_is_the_documented_map() {
        let bytes = deliver(b"\x01\x02").encode().expect("small frame");
        // len=26, map(2), "type", "deliver", "envelope", h'0102'
        let mut expected = vec![0, 0, 0, 26, 0xa2, 0x64];
        expected.extend_from_slice(b"type");
        expected.push(0x67);
        expected.extend_from_slice(b"deliver");
        expected.push(0x68);
        expected.extend_from_slice(b"envelope");
        expected.extend_from_slice(&[0x42, 1, 2]);
        assert_eq!(bytes, expected);
        // ciborium reads what we write as the same map.
        let value: Value = ciborium::de::from_reader(&bytes[4..]).expect("valid CBOR");
        assert_eq!(
            value,
            map(&[
                ("type", Value::Text("deliver".into())),
                ("envelope", Value::Bytes(vec![1, 2]))
            ])
        );
    }

    #[test]
    fn long_values_use_wider_heads() {
        for len in [23, 24, 255, 256, 65_535, 65_536] {
            let frame = deliver(&vec![7; len]);
            let bytes = frame.encode().expect("fits");
            assert_eq!(Frame::decode_body(&bytes[4..]), Ok(frame), "len {len}");
        }
    }

    #[test]
    fn hostile_prefix_is_refused_before_buffering() {
        let mut d = FrameDecoder::new(1024);
        d.push(&[0xff, 0xff, 0xff, 0xff]);
        let err = FrameError::TooLarge {
            len: u64::from(u32::MAX),
            max: 1024,
        };
        assert_eq!(d.next_frame(), Err(err.clone()));
        d.push(&[0; 4096]);
        assert_eq!(d.buffered(), 0, "input after an error is not kept");
        assert_eq!(d.next_frame(), Err(err.clone()));
        assert_eq!(d.finish(), Err(err));
    }

    #[test]
    fn oversized_second_frame_is_refused_at_push() {
        let mut d = FrameDecoder::new(64);
        let mut bytes = deliver(b"ok").encode().expect("fits");
        bytes.extend_from_slice(&[0, 0, 1, 0]);
        d.push(&bytes);
        // The error is sticky even though a good frame came first: framing is broken.
        assert_eq!(d.buffered(), 0);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 256, max: 64 })
        );
    }

    #[test]
    fn limit_is_inclusive() {
        let frame = deliver(&[9; 100]);
        let bytes = frame.encode().expect("fits");
        let len = bytes.len() - 4;
        let mut d = FrameDecoder::new(len);
        d.push(&bytes);
        assert_eq!(d.next_frame(), Ok(Some(frame)));
        let mut d = FrameDecoder::new(len - 1);
        d.push(&bytes);
        assert_eq!(
            d.next_frame().map_err(|e| e.reject_code()),
            Err(RejectCode::FrameTooLarge)
        );
    }

    #[test]
    fn truncated_stream_is_reported() {
        let bytes = deliver(b"abc").encode().expect("fits");
        let mut d = FrameDecoder::default();
        d.push(&bytes[..bytes.len() - 1]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                buffered: bytes.len() - 1
            })
        );
        d.push(&bytes[bytes.len() - 1..]);
        assert_eq!(d.next_frame(), Ok(Some(deliver(b"abc"))));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn strict_decoding_names_the_rule() {
        let text = |s: &str| Value::Text(s.into());
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (body(Value::Array(vec![])), FrameError::NotAMap),
            (
                body(map(&[("type", text("hello"))])),
                FrameError::UnknownType("hello".into()),
            ),
            (
                body(map(&[("envelope", Value::Bytes(vec![]))])),
                FrameError::MissingKey {
                    frame: "frame",
                    key: "type",
                },
            ),
            (
                body(map(&[("type", text("deliver"))])),
                FrameError::MissingKey {
                    frame: "deliver",
                    key: "envelope",
                },
            ),
            (
                body(map(&[("type", text("deliver")), ("envelope", text("x"))])),
                FrameError::WrongType {
                    key: "envelope",
                    expected: "byte string",
                },
            ),
            (
                body(map(&[
                    ("type", text("deliver")),
                    ("envelope", Value::Bytes(vec![])),
                    ("extra", Value::Null),
                ])),
                FrameError::UnknownKey {
                    frame: "deliver",
                    key: "extra".into(),
                },
            ),
            (
                body(map(&[("type", text("deliver")), ("type", text("deliver"))])),
                FrameError::DuplicateKey("type".into()),
            ),
            (
                body(Value::Map(vec![(
                    Value::Integer(1.into()),
                    text("deliver"),
                )])),
                FrameError::KeyNotText,
            ),
            (
                body(map(&[
                    ("type", text("reject")),
                    ("code", text("teapot")),
                    ("reason", text("")),
                ])),
                FrameError::UnknownRejectCode("teapot".into()),
            ),
            (
                {
                    let mut b = body(map(&[
                        ("type", text("receipt")),
                        ("receipt", Value::Bytes(vec![])),
                    ]));
                    b.push(0);
                    b
                },
                FrameError::TrailingBytes(1),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Frame::decode_body(&bytes), Err(expected));
        }
        assert!(matches!(Frame::decode_body(&[]), Err(FrameError::Cbor(_))));
        assert!(matches!(
            Frame::decode_body(&[0xa1]),
            Err(FrameError::Cbor(_))
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut bytes = vec![0x81; 100_000];
        bytes.push(0);
        assert!(matches!(
            Frame::decode_body(&bytes),
            Err(FrameError::Cbor(_))
        ));
    }

    #[test]
    fn huge_declared_string_inside_a_small_frame_does_not_allocate() {
        // map(1) "type": bstr of 2^63 bytes, of which none follow.
        let mut bytes = vec![0xa1, 0x64];
        bytes.extend_from_slice(b"type");
        bytes.extend_from_slice(&[0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            Frame::decode_body(&bytes),
            Err(FrameError::Cbor(_))
        ));
        // Same for a huge declared array.
        let bytes = [0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Frame::decode_body(&bytes),
            Err(FrameError::Cbor(_))
        ));
    }
}

#[cfg(test)]
mod checkpoint_frames {
    use super::*;

    #[test]
    fn checkpoint_and_cosigned_round_trip_and_refuse_extra_keys() {
        for frame in [
            Frame::Checkpoint {
                checkpoint: vec![0xd2, 1, 2],
            },
            Frame::Cosigned {
                checkpoint: vec![0xd2, 3],
            },
        ] {
            let bytes = frame.encode().expect("encode");
            assert_eq!(Frame::decode_body(&bytes[PREFIX_LEN..]), Ok(frame.clone()));
        }
        // {"type": "cosigned", "checkpoint": h'', "x": ""}
        let mut body = Vec::new();
        put_header(&mut body, MAJOR_MAP, 3);
        put_text(&mut body, "type");
        put_text(&mut body, "cosigned");
        put_text(&mut body, "checkpoint");
        put_bytes(&mut body, b"");
        put_text(&mut body, "x");
        put_text(&mut body, "");
        assert_eq!(
            Frame::decode_body(&body),
            Err(FrameError::UnknownKey {
                frame: "cosigned",
                key: "x".into()
            })
        );
        // A checkpoint frame without its envelope.
        let mut body = Vec::new();
        put_header(&mut body, MAJOR_MAP, 1);
        put_text(&mut body, "type");
        put_text(&mut body, "checkpoint");
        assert_eq!(
            Frame::decode_body(&body),
            Err(FrameError::MissingKey {
                frame: "checkpoint",
                key: "checkpoint"
            })
        );
    }
}
