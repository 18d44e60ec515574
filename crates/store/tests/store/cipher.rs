//! Encryption at rest: no body content in any file, bodies bound to their record and key,
//! bodies written in clear before encryption still read.

use pons_core::journal::Operation;
use pons_store::{MasterKey, Options, Store, StoreError};

use super::util::{draft, files, id, incoming, master_key, open, outgoing, receipt_for};

const SECRET: &str = "Janssens-85.07.30-033.61";

fn envelope(n: u64) -> Vec<u8> {
    format!("envelope {n} subject {SECRET} body").into_bytes()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn fill(store: &Store) {
    for n in 1..=20 {
        store
            .submit(outgoing(n, "cuta"), &envelope(n), draft(Operation::Collect))
            .await
            .expect("submit");
        store
            .receive(
                incoming(100 + n, "vaa"),
                &envelope(100 + n),
                draft(Operation::Receive),
                &receipt_for(),
            )
            .await
            .expect("receive");
    }
    store.flush().await.expect("flush");
}

#[tokio::test]
async fn no_body_content_in_any_file_and_bodies_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        fill(&store).await;
        assert_eq!(store.outbox_envelope(id(3)).unwrap(), Some(envelope(3)));
        assert_eq!(store.inbox_envelope(id(103)).unwrap(), Some(envelope(103)));
    }
    let all = files(dir.path());
    assert!(!all.is_empty());
    for (path, bytes) in &all {
        assert!(
            !contains(bytes, SECRET.as_bytes()),
            "{} holds a body in clear",
            path.display()
        );
    }
    // The same check finds the content when bodies are stored in clear: it can fail.
    let plain_dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(plain_dir.path(), Options::default()).expect("open");
        fill(&store).await;
    }
    assert!(files(plain_dir.path())
        .iter()
        .any(|(_, b)| contains(b, SECRET.as_bytes())));

    let store = open(dir.path());
    assert_eq!(store.inbox_envelope(id(120)).unwrap(), Some(envelope(120)));
}

#[tokio::test]
async fn encrypted_bodies_need_the_right_master_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        fill(&store).await;
    }
    {
        let store = Store::open(dir.path(), Options::default()).expect("open");
        let err = store.outbox_envelope(id(1)).unwrap_err();
        assert!(matches!(err, StoreError::NoMasterKey { .. }), "{err}");
        // Metadata and the journal stay readable without the key.
        assert!(store.outbox_get(id(1)).unwrap().is_some());
        store.verify_journal().expect("journal verifies");
    }
    let mut other = Options::default();
    other.master_key = Some(MasterKey::from_bytes(&[0x11; 32]).unwrap());
    let store = Store::open(dir.path(), other).expect("open");
    let err = store.inbox_envelope(id(101)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn bodies_stored_in_clear_still_read_with_a_master_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), Options::default()).expect("open");
        fill(&store).await;
    }
    let mut options = Options::default();
    options.master_key = Some(master_key());
    let store = Store::open(dir.path(), options).expect("open");
    assert_eq!(store.outbox_envelope(id(5)).unwrap(), Some(envelope(5)));
    assert_eq!(store.inbox_envelope(id(105)).unwrap(), Some(envelope(105)));
}
