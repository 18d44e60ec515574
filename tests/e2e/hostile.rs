//! Hostile peers: clients outside the federation, oversized and garbage frames, forged
//! envelopes. The test acts as the peer, with pons-transport where it can and with raw
//! quinn and rustls where pons-transport would refuse to misbehave (see tests/README.md).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pons_core::journal::Operation;
use pons_core::NodeId;
use pons_pki::devca::DevCa;
use pons_pki::{FederationTrust, KeyAlgorithm, NodeFiles, NodeIdentity};
use pons_proto::{Frame, FrameDecoder, RejectCode};
use pons_transport::{Endpoint, Limits};
use time::OffsetDateTime;

use crate::util::{example_report, ids, journal, journaled, Federation, Init, MRR};

/// cuta receives minor-risk reports from adolescence; adolescence is not running, the
/// test speaks for it (or against it). `nccn` is a peer of cuta allowed nothing.
fn receiver() -> Federation {
    let mut fed = Federation::new(&["adolescence", "cuta", "nccn"]);
    fed.init("adolescence", &Init::new().peer("cuta").send("cuta", MRR));
    fed.init(
        "cuta",
        &Init::new()
            .peer("adolescence")
            .peer("nccn")
            .receive("adolescence", MRR),
    );
    fed.init("nccn", &Init::new().peer("cuta"));
    fed.start("cuta");
    fed
}

/// A valid envelope from adolescence to cuta, sealed offline with adolescence's key.
fn sealed_envelope(fed: &Federation) -> Vec<u8> {
    let certs = fed.certs();
    let out = fed.path().join("record.cose");
    let arg = |p: &Path| p.display().to_string();
    fed.pons_ok(&[
        "record",
        "seal",
        "--class",
        MRR,
        "--file",
        &arg(&example_report()),
        "--to",
        "cuta",
        "--key",
        &arg(&certs.join("adolescence/sign.key")),
        "--cert",
        &arg(&certs.join("adolescence/sign.pem")),
        "--pseudonym-key",
        &arg(&certs.join("pseudonym.key")),
        "--out",
        &arg(&out),
    ]);
    std::fs::read(out).expect("read the sealed envelope")
}

fn trust(fed: &Federation) -> FederationTrust {
    FederationTrust::load("pons.example", &fed.certs().join("ca.pem"), &[])
        .expect("load the federation CA")
}

fn identity(fed: &Federation, node: &str) -> NodeIdentity {
    NodeIdentity::load(
        &NodeFiles::in_dir(&fed.certs().join(node)),
        OffsetDateTime::now_utc(),
    )
    .expect("load a node identity")
}

/// Delivers `envelope` to cuta with pons-transport as `identity`, trusting `trust`.
fn deliver_as(
    fed: &Federation,
    identity: &NodeIdentity,
    trust: &FederationTrust,
    envelope: &[u8],
) -> Result<Frame, pons_transport::TransportError> {
    let addr = fed.addr("cuta");
    fed.block_on(async {
        let endpoint = Endpoint::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            identity,
            trust,
            Limits::default(),
        )
        .expect("bind a client endpoint");
        let cuta = NodeId::new("cuta").expect("node id");
        let link = endpoint.peer(cuta, addr, "localhost".into());
        let result = link.deliver(envelope).await;
        link.close().await;
        endpoint.close().await;
        result
    })
}

/// The legitimate sender delivers the same envelope: a receipt. This is what makes the
/// refusals above meaningful: the envelope itself was acceptable.
fn deliver_legitimately(fed: &Federation, envelope: &[u8]) {
    let frame = deliver_as(fed, &identity(fed, "adolescence"), &trust(fed), envelope)
        .expect("adolescence delivers");
    assert!(
        matches!(frame, Frame::Receipt { .. }),
        "adolescence's delivery was answered {frame:?}"
    );
}

/// After the hostile attempts and one legitimate delivery: cuta stored exactly that one
/// record, and its journal holds its `receive` entry and, if given, the refusals.
fn assert_only_the_legitimate_record(fed: &mut Federation, envelope: &[u8], rejects: usize) {
    let id = record_id(fed, envelope);
    assert_eq!(ids(&fed.inbox_jsonl("cuta")), vec![id.clone()]);
    fed.stop("cuta");
    let store = fed.store("cuta");
    store.verify_journal().expect("cuta's journal verifies");
    let inbox = store.inbox_list(usize::MAX).expect("inbox");
    assert_eq!(inbox.len(), 1, "cuta stored {} records", inbox.len());
    let entries = journal(&store);
    assert_eq!(journaled(&entries, Operation::Receive), vec![id]);
    assert_eq!(
        journaled(&entries, Operation::Reject).len(),
        rejects,
        "{entries:#?}"
    );
    assert_eq!(entries.len(), 1 + rejects, "{entries:#?}");
}

/// The id of the record in `envelope`, opened with the federation's trust.
fn record_id(fed: &Federation, envelope: &[u8]) -> String {
    let trust = trust(fed).to_core().expect("core trust");
    let opened = pons_core::open_record(
        envelope,
        &trust,
        OffsetDateTime::now_utc(),
        time::Duration::minutes(5),
    )
    .expect("the sealed envelope opens");
    opened.record.id.to_string()
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_and_nothing_is_stored() {
    let mut fed = receiver();
    let envelope = sealed_envelope(&fed);
    let now = OffsetDateTime::now_utc();

    // Another CA, same federation name, issuing a certificate that claims to be adolescence.
    let rogue = DevCa::new("pons.example", KeyAlgorithm::Ed25519, now).expect("rogue CA");
    let impostor = rogue
        .issue(&NodeId::new("adolescence").expect("node id"), now)
        .expect("rogue certificate")
        .identity(now)
        .expect("rogue identity");
    // The impostor trusts both CAs, so that its side of the handshake accepts cuta: only
    // cuta's judgement of the client certificate is tested.
    let both = FederationTrust::from_der(
        "pons.example",
        vec![
            trust(&fed).ca_certificates()[0].clone(),
            rogue.certificate().clone(),
        ],
        vec![],
    )
    .expect("trust of both CAs");
    let refused = deliver_as(&fed, &impostor, &both, &envelope);
    assert!(
        refused.is_err(),
        "a client of another CA was answered {refused:?}"
    );
    assert!(fed.inbox_jsonl("cuta").is_empty(), "cuta stored a record");

    deliver_legitimately(&fed, &envelope);
    assert_only_the_legitimate_record(&mut fed, &envelope, 0);
}

#[test]
fn a_client_without_a_certificate_is_refused_and_nothing_is_stored() {
    let mut fed = receiver();
    let envelope = sealed_envelope(&fed);
    let ca = trust(&fed).ca_certificates()[0].clone();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA as a root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let outcome = raw_exchange(&fed, tls, &[deliver_frame(&envelope)]);
    assert!(
        outcome.iter().all(Result::is_err),
        "a client without a certificate was answered {outcome:?}"
    );
    assert!(fed.inbox_jsonl("cuta").is_empty(), "cuta stored a record");

    deliver_legitimately(&fed, &envelope);
    assert_only_the_legitimate_record(&mut fed, &envelope, 0);
}

#[test]
fn oversized_garbage_and_forged_frames_are_refused_and_the_node_keeps_serving() {
    let mut fed = receiver();
    let envelope = sealed_envelope(&fed);
    // nccn is a node of the federation with a valid certificate, but sends rubbish.
    let tls = pons_pki::client_config(&identity(&fed, "nccn"), &trust(&fed)).expect("nccn client");

    let mut too_large = vec![0xFF, 0xFF, 0xFF, 0xF0];
    too_large.extend_from_slice(&[0u8; 64]);
    let mut garbage = 64u32.to_be_bytes().to_vec();
    garbage.extend(pseudo_random(64));
    let raw_garbage = pseudo_random(300).into_iter().map(|b| b & 0x7F).collect();
    let mut two_frames = deliver_frame(&envelope);
    two_frames.extend(deliver_frame(&envelope));
    let requests = vec![
        too_large,
        garbage,
        raw_garbage,
        deliver_frame(b"not a COSE_Sign1 envelope at all"),
        // adolescence's genuine envelope, relayed by nccn.
        deliver_frame(&envelope),
        two_frames,
    ];
    let answers = raw_exchange(&fed, tls, &requests);
    let codes: Vec<Option<RejectCode>> = answers
        .iter()
        .map(|a| match a {
            Ok(Frame::Reject { code, .. }) => Some(*code),
            Ok(other) => panic!("a hostile request was answered {other:?}"),
            // A reset stream is a refusal too.
            Err(_) => None,
        })
        .collect();
    let expected = [
        RejectCode::FrameTooLarge,
        RejectCode::Malformed,
        // Bytes whose first four read as a length > 1 MiB: refused as too large.
        RejectCode::FrameTooLarge,
        RejectCode::InvalidSignature,
        RejectCode::SignerMismatch,
        RejectCode::Malformed,
    ];
    for (i, (got, want)) in codes.iter().zip(expected).enumerate() {
        assert_eq!(*got, Some(want), "request {i}: {:?}", answers[i]);
    }
    assert!(fed.inbox_jsonl("cuta").is_empty(), "cuta stored a record");

    // cuta still serves the legitimate sender.
    deliver_legitimately(&fed, &envelope);
    // The forged envelope and the relayed one are refusals of records: journaled.
    assert_only_the_legitimate_record(&mut fed, &envelope, 2);
}

/// A `Deliver` frame carrying `envelope`.
fn deliver_frame(envelope: &[u8]) -> Vec<u8> {
    Frame::Deliver {
        envelope: envelope.to_vec(),
    }
    .encode()
    .expect("encode a deliver frame")
}

/// Deterministic bytes that are not a pons/1 frame (xorshift).
fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Connects to cuta with raw quinn and `tls`, sends each request on its own stream and
/// reads one answer frame per stream. A connection or stream failure is an `Err`.
fn raw_exchange(
    fed: &Federation,
    mut tls: rustls::ClientConfig,
    requests: &[Vec<u8>],
) -> Vec<Result<Frame, String>> {
    tls.alpn_protocols = vec![pons_pki::ALPN.to_vec()];
    let addr = fed.addr("cuta");
    fed.block_on(async {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
            .expect("QUIC client config");
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("client endpoint");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = match endpoint.connect(addr, "localhost") {
            Ok(connecting) => connecting.await.map_err(|e| format!("connect: {e}")),
            Err(e) => Err(format!("connect: {e}")),
        };
        let mut out = Vec::new();
        for request in requests {
            let answer = match &conn {
                Ok(conn) => exchange_one(conn, request).await,
                Err(e) => Err(e.clone()),
            };
            out.push(answer);
        }
        if let Ok(conn) = conn {
            conn.close(0u32.into(), b"done");
        }
        endpoint.wait_idle().await;
        out
    })
}

async fn exchange_one(conn: &quinn::Connection, request: &[u8]) -> Result<Frame, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open: {e}"))?;
    // The receiver may stop reading early (an oversized prefix): write errors are expected
    // then, the answer still comes.
    let _ = send.write_all(request).await;
    let _ = send.finish();
    let bytes = recv
        .read_to_end(1 << 20)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let mut decoder = FrameDecoder::new(1 << 20);
    decoder.push(&bytes);
    match decoder.next_frame() {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(format!("no answer frame ({} bytes)", bytes.len())),
        Err(e) => Err(format!("bad answer frame: {e}")),
    }
}
