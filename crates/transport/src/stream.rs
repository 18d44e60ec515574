//! Reading one length-prefixed frame from a QUIC stream, with bounded memory.

use pons_proto::{Frame, FrameDecoder, FrameError, RejectCode};
use quinn::{ReadError, RecvStream};
use tokio::sync::{Semaphore, SemaphorePermit};

use pons_proto::Refusal;

/// Largest chunk taken from quinn at once.
const CHUNK: usize = 64 * 1024;

/// What a stream carried, framing-wise, once read.
#[derive(Debug)]
pub(crate) enum Framing {
    /// Exactly one frame, then the end of the stream.
    One(Frame),
    /// The stream ended before any byte.
    Empty,
    /// The bytes broke the framing (oversized prefix, bad CBOR, truncated frame).
    Bad(FrameError),
    /// A frame was followed by this many more bytes (at least): one frame per stream.
    Extra(usize),
}

impl Framing {
    /// The envelope of a request stream, or the refusal to answer with.
    pub(crate) fn into_request(self) -> Result<Vec<u8>, Refusal> {
        match self {
            Framing::One(frame) => pons_proto::receiver::refusal_for_frame(Ok(Some(frame))),
            Framing::Empty => pons_proto::receiver::refusal_for_frame(Ok(None)),
            Framing::Bad(e) => pons_proto::receiver::refusal_for_frame(Err(e)),
            Framing::Extra(n) => Err(Refusal::new(
                RejectCode::Malformed,
                format!("stream carries {n} bytes after its frame: one frame per stream"),
            )),
        }
    }

    /// The request of a stream: a `Deliver` (as its envelope) or a `Checkpoint` frame, or
    /// the refusal to answer with.
    pub(crate) fn into_request_frame(self) -> Result<Frame, Refusal> {
        match self {
            Framing::One(frame @ Frame::Checkpoint { .. }) => Ok(frame),
            other => other
                .into_request()
                .map(|envelope| Frame::Deliver { envelope }),
        }
    }

    /// The response frame of a request stream, or why it is not one.
    pub(crate) fn into_response(self) -> Result<Frame, String> {
        match self {
            Framing::One(
                frame @ (Frame::Receipt { .. } | Frame::Reject { .. } | Frame::Cosigned { .. }),
            ) => Ok(frame),
            Framing::One(other) => Err(format!(
                "expected a receipt or reject frame, got {}",
                other.type_name()
            )),
            Framing::Empty => Err("stream ended before a response frame".into()),
            Framing::Bad(e) => Err(e.to_string()),
            Framing::Extra(n) => Err(format!(
                "stream carries {n} bytes after its frame: one frame per stream"
            )),
        }
    }

    /// Whether reading stopped before the peer finished its side.
    pub(crate) fn stopped_early(&self) -> bool {
        matches!(self, Framing::Bad(_) | Framing::Extra(_))
    }
}

/// Reads until the peer finishes its side or the framing breaks.
///
/// Memory is bounded by `max_frame` + 4 + one chunk: the decoder checks the length prefix
/// as soon as its 4 bytes are in, and reading stops at the first byte past a frame.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    max_frame: usize,
) -> Result<Framing, ReadError> {
    read(recv, max_frame, None)
        .await
        .map(|(framing, _)| framing)
}

/// The bytes all the requests of one connection may hold at once.
pub(crate) struct RequestBudget {
    permits: Semaphore,
    bytes: usize,
}

impl RequestBudget {
    pub(crate) fn new(bytes: usize) -> RequestBudget {
        RequestBudget {
            permits: Semaphore::new(bytes),
            bytes,
        }
    }

    /// A share of `len` bytes, waiting for other requests to give theirs back; never more
    /// than the whole budget, so that a frame larger than it still goes through alone.
    async fn take(&self, len: usize) -> Option<SemaphorePermit<'_>> {
        let wanted = len.min(self.bytes);
        // Never closed; a failure would only mean this frame is not counted.
        self.permits
            .acquire_many(u32::try_from(wanted).unwrap_or(u32::MAX))
            .await
            .ok()
    }
}

/// [`read_frame`] for a request, whose frame is counted against `budget`. Once the length
/// prefix is in, the request takes as many bytes of the budget as its frame has before
/// reading the rest; the permit is held until it is dropped, after the request is
/// answered. A request waits holding nothing of the budget but its first chunk, so
/// requests never wait on each other's partial shares.
pub(crate) async fn read_request<'b>(
    recv: &mut RecvStream,
    max_frame: usize,
    budget: &'b RequestBudget,
) -> Result<(Framing, Option<SemaphorePermit<'b>>), ReadError> {
    read(recv, max_frame, Some(budget)).await
}

async fn read<'b>(
    recv: &mut RecvStream,
    max_frame: usize,
    budget: Option<&'b RequestBudget>,
) -> Result<(Framing, Option<SemaphorePermit<'b>>), ReadError> {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut frame: Option<Frame> = None;
    let mut total: usize = 0;
    let limit = max_frame.saturating_add(4);
    // The length prefix, as far as it came in, while it decides no permit yet.
    let (mut prefix, mut have, mut permit) = ([0u8; 4], 0, None);
    while let Some(chunk) = recv.read_chunk(CHUNK, true).await? {
        let bytes = &chunk.bytes;
        if bytes.is_empty() {
            continue;
        }
        if frame.is_some() {
            return Ok((Framing::Extra(bytes.len()), permit));
        }
        total = total.saturating_add(bytes.len());
        decoder.push(bytes);
        if let (Some(budget), true) = (budget, have < prefix.len()) {
            let take = (prefix.len() - have).min(bytes.len());
            prefix[have..have + take].copy_from_slice(&bytes[..take]);
            have += take;
            if have == prefix.len() {
                // An oversized prefix takes nothing: the decoder refuses it below.
                let len = u32::from_be_bytes(prefix) as usize;
                if len <= max_frame {
                    permit = budget.take(len.saturating_add(4)).await;
                }
            }
        }
        match decoder.next_frame() {
            Err(e) => return Ok((Framing::Bad(e), permit)),
            Ok(Some(f)) => {
                if decoder.buffered() > 0 {
                    return Ok((Framing::Extra(decoder.buffered()), permit));
                }
                frame = Some(f);
            }
            Ok(None) => {
                // The decoder refuses an oversized prefix, so an incomplete frame never
                // exceeds the limit; this guard only keeps the bound obvious.
                if total > limit {
                    return Ok((
                        Framing::Bad(FrameError::TooLarge {
                            len: total as u64,
                            max: max_frame as u64,
                        }),
                        permit,
                    ));
                }
            }
        }
    }
    let framing = match frame {
        Some(f) => Framing::One(f),
        None => match decoder.finish() {
            Ok(()) => Framing::Empty,
            Err(e) => Framing::Bad(e),
        },
    };
    Ok((framing, permit))
}
