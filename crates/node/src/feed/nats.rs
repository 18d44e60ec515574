//! The `nats` sink: each record published to a NATS JetStream stream.
//!
//! Every message carries the record id in the `Nats-Msg-Id` header, so JetStream drops a
//! second publication of the same record within the stream's duplicate window (the sink
//! makes the stream with `duplicate_window_secs`, a day by default, when it does not exist).
//! The cursor moves only after JetStream acknowledged the messages: an acknowledged message
//! is stored by the stream. A batch is published in order on one connection and its
//! acknowledgements are awaited in the same order; the cursor moves to the last record of
//! the unbroken acknowledged prefix.
//!
//! TLS to the server, when the URL asks for it, uses rustls with the ring provider (the
//! crate is built without aws-lc-rs).

use std::time::Duration;

use std::future::IntoFuture;

use async_nats::jetstream::{self, message::PublishMessage, stream};

use super::{Item, NatsSink, Push, Pushed};

/// How long connecting, or an acknowledgement, may take before the attempt fails.
const NATS_TIMEOUT: Duration = Duration::from_secs(10);

/// The nats sink.
pub(crate) struct Nats {
    conf: NatsSink,
    context: Option<jetstream::Context>,
}

impl Nats {
    /// A nats sink; it connects at its first hand-over.
    pub(crate) fn new(conf: NatsSink) -> Self {
        Self {
            conf,
            context: None,
        }
    }

    async fn connect(&mut self) -> Result<jetstream::Context, String> {
        if let Some(c) = &self.context {
            return Ok(c.clone());
        }
        let url = &self.conf.url;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(NATS_TIMEOUT)
            .request_timeout(Some(NATS_TIMEOUT))
            .connect(url.as_str())
            .await
            .map_err(|e| format!("nats {url}: cannot connect: {e}"))?;
        let context = jetstream::new(client);
        context
            .get_or_create_stream(stream::Config {
                name: self.conf.stream.clone(),
                subjects: vec![self.conf.subject.clone()],
                duplicate_window: self.conf.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("nats {url}: stream {}: {e}", self.conf.stream))?;
        self.context = Some(context.clone());
        Ok(context)
    }

    async fn publish(&mut self, items: &[Item]) -> Pushed {
        let context = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                return Pushed {
                    taken: 0,
                    error: Some(e),
                }
            }
        };
        let mut pending = Vec::with_capacity(items.len());
        let mut error = None;
        for item in items {
            let publish = PublishMessage::build()
                .payload(item.json.clone().into())
                .message_id(item.rec.id.to_string());
            match context
                .send_publish(self.conf.subject.clone(), publish)
                .await
            {
                Ok(ack) => pending.push(ack),
                Err(e) => {
                    error = Some(format!("nats publish of {}: {e}", item.rec.id));
                    break;
                }
            }
        }
        let mut taken = 0;
        for (ack, item) in pending.into_iter().zip(items) {
            match tokio::time::timeout(NATS_TIMEOUT, ack.into_future()).await {
                Ok(Ok(_ack)) => taken += 1,
                Ok(Err(e)) => {
                    error = Some(format!("nats ack of {}: {e}", item.rec.id));
                    break;
                }
                Err(_) => {
                    error = Some(format!(
                        "nats ack of {}: no answer in {NATS_TIMEOUT:?}",
                        item.rec.id
                    ));
                    break;
                }
            }
        }
        if error.is_some() {
            // Start from a fresh connection and stream check on the next attempt.
            self.context = None;
        }
        Pushed { taken, error }
    }
}

impl Push for Nats {
    async fn push(&mut self, items: &[Item]) -> Pushed {
        self.publish(items).await
    }

    fn max_attempts(&self) -> Option<u32> {
        None
    }

    fn backoff(&self) -> pons_proto::Backoff {
        pons_proto::Backoff {
            initial: self.conf.retry_initial,
            multiplier: 2,
            max: self.conf.retry_max,
        }
    }
}
