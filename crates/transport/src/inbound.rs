//! The server side: accept peers, name them by certificate, answer one frame per stream.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pons_core::SpiffeId;
use pons_proto::{Frame, Refusal, RejectCode};
use quinn::{Connection, Incoming, RecvStream, SendStream, VarInt};
use rustls_pki_types::CertificateDer;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stream::{read_request, RequestBudget};
use crate::{code, Limits};

/// What the node does with a record that arrived: the receiving half of `pons/1`.
pub trait InboundHandler: Send + Sync + 'static {
    /// Answers one `Deliver` frame from `peer` (the SPIFFE ID of its TLS client
    /// certificate, already checked to be of this federation) carrying `envelope`.
    ///
    /// The frame returned (a `Receipt` or a `Reject`) is written back on the same stream.
    /// The handler does every check of `pons_proto::receiver` from opening the envelope on,
    /// and answers a receipt only once the record is durable.
    fn on_deliver(&self, peer: &SpiffeId, envelope: Vec<u8>) -> impl Future<Output = Frame> + Send;

    /// Answers one `Checkpoint` frame from `peer`: a `Cosigned` frame with the
    /// countersignature, or a `Reject`. By default checkpoints are refused.
    fn on_checkpoint(
        &self,
        peer: &SpiffeId,
        checkpoint: Vec<u8>,
    ) -> impl Future<Output = Frame> + Send {
        let _ = (peer, checkpoint);
        async {
            Refusal::new(
                RejectCode::PolicyDenied,
                "this node countersigns no checkpoints",
            )
            .frame()
        }
    }
}

/// Count of inbound streams being served, to let them finish at shutdown.
#[derive(Default)]
pub(crate) struct Inflight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Inflight {
    fn enter(self: &Arc<Self>) -> InflightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InflightGuard(self.clone())
    }

    /// Resolves once no stream is being served.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InflightGuard(Arc<Inflight>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Accepts connections until the endpoint closes. Dropping this future (abort) drops every
/// connection task, and with them their stream tasks.
pub(crate) async fn accept_loop<H: InboundHandler>(
    quic: quinn::Endpoint,
    handler: Arc<H>,
    federation: String,
    limits: Limits,
    inflight: Arc<Inflight>,
) {
    let mut connections = JoinSet::new();
    while let Some(incoming) = quic.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            incoming,
            handler.clone(),
            federation.clone(),
            limits,
            inflight.clone(),
        ));
    }
    // The endpoint is closed: connection tasks end as their connections do.
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<H: InboundHandler>(
    incoming: Incoming,
    handler: Arc<H>,
    federation: String,
    limits: Limits,
    inflight: Arc<Inflight>,
) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(limits.connect_timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            // A client certificate from outside the federation ends here (TLS alert).
            tracing::info!(%remote, error = %e, "inbound handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "inbound handshake timed out");
            return;
        }
    };
    let peer = match peer_identity(&conn, &federation) {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::warn!(%remote, %reason, "refusing inbound connection");
            conn.close(VarInt::from_u32(code::PEER_IDENTITY), reason.as_bytes());
            return;
        }
    };
    tracing::debug!(%remote, %peer, "inbound connection");
    // Stream tasks live in this set: when the connection ends, they are dropped with it.
    // Their number is bounded by the connection's `max_concurrent_bidi_streams`.
    let mut streams = JoinSet::new();
    // The bytes this peer's requests may hold at once, whatever their number.
    let budget = Arc::new(RequestBudget::new(limits.inbound_budget()));
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let guard = inflight.enter();
                    let handler = handler.clone();
                    let peer = peer.clone();
                    let budget = budget.clone();
                    streams.spawn(async move {
                        serve_stream(&*handler, &peer, send, recv, &limits, &budget).await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "inbound connection ended");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
}

/// The SPIFFE ID of the client certificate, if it names a node of `federation`.
fn peer_identity(conn: &Connection, federation: &str) -> Result<SpiffeId, String> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| "client presented no certificate".to_owned())?;
    let id = pons_pki::peer_spiffe_id(&certs).map_err(|e| e.to_string())?;
    if id.federation != federation {
        return Err(format!(
            "client {id} is not a node of federation {federation}"
        ));
    }
    Ok(id)
}

/// Serves one request stream: read one `Deliver`, answer one frame, finish.
async fn serve_stream<H: InboundHandler>(
    handler: &H,
    peer: &SpiffeId,
    mut send: SendStream,
    mut recv: RecvStream,
    limits: &Limits,
    budget: &RequestBudget,
) {
    // Against slow-loris: the whole request must arrive within the response timeout.
    let deadline = Instant::now() + limits.response_timeout;
    let read = read_request(&mut recv, limits.max_frame, budget);
    // Held until the response is written: the request's bytes are in memory until then.
    let (framing, _held) = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "inbound stream failed while reading");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "inbound stream sent no complete request in time");
            let _ = recv.stop(VarInt::from_u32(code::STREAM_TIMEOUT));
            let _ = send.reset(VarInt::from_u32(code::STREAM_TIMEOUT));
            return;
        }
    };
    if framing.stopped_early() {
        // Refuse the rest of the request rather than reading it.
        let _ = recv.stop(VarInt::from_u32(code::STREAM_REFUSED));
    }
    let response = match framing.into_request_frame() {
        Ok(Frame::Checkpoint { checkpoint }) => handler.on_checkpoint(peer, checkpoint).await,
        Ok(Frame::Deliver { envelope }) => handler.on_deliver(peer, envelope).await,
        Ok(other) => Refusal::new(
            RejectCode::Malformed,
            format!("{} is not a request frame", other.type_name()),
        )
        .frame(),
        Err(refusal) => {
            tracing::info!(%peer, code = %refusal.code, reason = %refusal.reason, "refusing inbound stream");
            refusal.frame()
        }
    };
    let bytes = match response.encode() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(%peer, error = %e, "response frame cannot be encoded");
            match Refusal::new(RejectCode::Internal, "response frame cannot be encoded")
                .frame()
                .encode()
            {
                Ok(bytes) => bytes,
                Err(_) => return,
            }
        }
    };
    let deadline = Instant::now() + limits.response_timeout;
    match tokio::time::timeout_at(deadline, send.write_all(&bytes)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
            // Stay counted until the peer has the whole response, so that a shutdown
            // waiting for inbound streams does not cut it off.
            let _ = tokio::time::timeout_at(deadline, send.stopped()).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "inbound stream failed while writing"),
        Err(_) => {
            tracing::info!(%peer, "inbound stream did not take its response in time");
            let _ = send.reset(VarInt::from_u32(code::STREAM_TIMEOUT));
        }
    }
}
