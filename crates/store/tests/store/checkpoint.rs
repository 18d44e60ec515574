//! Checkpoint and countersignature trees: kept across reopen, listed per owner.

use crate::store::util::{node, open};

#[tokio::test]
async fn checkpoints_and_countersignatures_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        assert_eq!(store.last_checkpoint().expect("read"), None);
        store.put_checkpoint(10, b"ten").await.expect("put");
        store.put_checkpoint(2, b"two").await.expect("put");
        store
            .put_cosigned(&node("cuta"), 10, &node("adolescence"), b"cs-a")
            .await
            .expect("put");
        store
            .put_cosigned(&node("cuta"), 10, &node("nccn"), b"cs-n")
            .await
            .expect("put");
        // A peer whose id is a prefix of another's must not see the other's.
        store
            .put_cosigned(&node("cut"), 3, &node("cuta"), b"other")
            .await
            .expect("put");
    }
    let store = open(dir.path());
    assert_eq!(
        store.checkpoints().expect("list"),
        vec![(2, b"two".to_vec()), (10, b"ten".to_vec())]
    );
    assert_eq!(
        store.last_checkpoint().expect("last"),
        Some((10, b"ten".to_vec()))
    );
    let cs = store.cosigned(&node("cuta")).expect("cosigned");
    assert_eq!(cs.len(), 2);
    assert_eq!((cs[0].seq, cs[0].cosigner.as_str()), (10, "adolescence"));
    assert_eq!(cs[1].envelope, b"cs-n");
    let other = store.cosigned(&node("cut")).expect("cosigned");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].cosigner, "cuta");
}
