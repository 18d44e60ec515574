//! Checkpoint and countersignature trees: kept across reopen, listed per owner.

use crate::store::util::{node, open};
use pons_store::StoreError;

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

#[tokio::test]
async fn pruning_keeps_the_rest_verifiable_from_the_anchor() {
    use pons_core::journal::{ChainHead, Operation};

    use crate::store::util::{draft, journal};

    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for _ in 0..10 {
            store
                .append_journal(draft(Operation::Consult))
                .await
                .expect("append");
        }
        let entries = journal(&store);
        let anchor = ChainHead::of(&entries[5]);
        // An anchor that names no entry of this journal is refused, and changes nothing.
        let wrong = ChainHead {
            seq: 6,
            hash: [9; 32],
        };
        assert!(store
            .prune_journal(wrong, b"cp", draft(Operation::Erase))
            .await
            .is_err());
        assert_eq!(store.journal_anchor().expect("anchor"), None);
        // The pruning must be journaled as an erasure, and nothing else.
        assert!(matches!(
            store
                .prune_journal(anchor, b"cp6", draft(Operation::Consult))
                .await,
            Err(StoreError::WrongOperation { .. })
        ));
        assert_eq!(store.journal_anchor().expect("anchor"), None);

        assert_eq!(
            store
                .prune_journal(anchor, b"cp6", draft(Operation::Erase))
                .await
                .expect("prune"),
            5
        );
        let left = journal(&store);
        assert_eq!(left[0].seq, 6);
        // The pruning's own entry, written with the anchor in one transaction.
        assert_eq!(left.last().expect("entries").operation, Operation::Erase);
        assert_eq!(store.verify_journal().expect("verifies").seq, 11);
        // Appending goes on from the head.
        store
            .append_journal(draft(Operation::Consult))
            .await
            .expect("append");
    }
    let store = open(dir.path());
    assert_eq!(
        store.verify_journal().expect("verifies after reopen").seq,
        12
    );
    let (anchor, cp) = store.journal_anchor().expect("anchor").expect("set");
    assert_eq!((anchor.seq, cp.as_slice()), (6, b"cp6".as_slice()));
    assert_eq!(store.journal_start().expect("start").seq, 5);
    // An older anchor does not move it back.
    assert_eq!(
        store
            .prune_journal(
                ChainHead::of(&journal(&store)[0]),
                b"again",
                draft(Operation::Erase)
            )
            .await
            .expect("no-op"),
        0
    );
}
