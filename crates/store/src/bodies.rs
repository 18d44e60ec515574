//! The body log: record bodies out of sled's page tree (issue 7).
//!
//! sled keeps values in its leaves and splits a leaf past 16 entries; with 2 KiB bodies
//! every split copied ~37 KB, and sled's own log rewrote those leaves: ~46 KB written and
//! a fifth of the CPU per record (`docs/performance.md`). Here a body is written once, to
//! an append-only file of this store's `<dir>/bodies/`, and sled's `outbox_body` /
//! `inbox_body` trees hold a [`BodyRef`] to it (21 bytes).
//!
//! What makes a body durable is still the write-ahead log: a commit's log record carries
//! every body it stores, with the place assigned to it here (under the write lock, before
//! the record is appended), and every place it erases. The body files are written after the
//! log record (to the kernel, never synced on a commit's path) and fdatasync'ed before a
//! checkpoint retires the log segments that hold the same bodies. Recovery writes the bodies
//! of **every** record still in the log at their places again, not only those sled lacks:
//! sled writes itself out on its own, so after a power loss it may hold a reference whose
//! bytes the kernel never wrote. Writing at an assigned place twice is harmless; an erasure
//! replayed after it erases the place again.
//!
//! Erasure punches the body's blocks out of its file (`fallocate(PUNCH_HOLE)`, zeros where a
//! file system cannot): every body starts on a [`BLOCK`] boundary and owns its blocks, so
//! the punched blocks are freed and no file keeps the ciphertext (its data key, in its
//! reference, is destroyed by the erasing commit itself). The checkpointer punches, which
//! the erasure asks for at once, then fdatasyncs the file, then deletes the log segments
//! that held the body; punching in the commit halved the sweep's erasures per second.
//!
//! Format: a file `{segment:08}.body` starts with [`MAGIC`] in a block of its own; bodies
//! follow, each at a block boundary, as stored before (`cipher.rs`: format byte, nonce,
//! AES-256-GCM). A [`BodyRef`] is `0x02 ‖ segment: u32 ‖ offset: u64 ‖ len: u32 ‖
//! crc32: u32` (big-endian); the CRC is over the body's bytes and is checked at every read.
//! An encrypted body's reference carries its wrapped data key after it, under tag `0x03`
//! ([`Stored::Ref`]): one sled key per body instead of two (the `body_keys` tree is only
//! read for bodies older stores wrote). The key stays apart from the ciphertext: in sled,
//! not in the body log.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sled::IVec;

use crate::wal::io;
use crate::StoreError;

/// The first byte of a [`BodyRef`] as stored in a body tree: unlike a body's own format bytes
/// (`0x00` clear, `0x01` encrypted), which an older store keeps in sled itself.
pub(crate) const REF_TAG: u8 = 0x02;

/// The first byte of a [`BodyRef`] followed by the body's wrapped data key.
const REF_KEYED_TAG: u8 = 0x03;

/// The first byte of a body tree's value inside a transaction, before its commit gives the
/// body a place: `0x04 ‖ wrapped key length: u8 ‖ wrapped key ‖ body` ([`pending`]).
const PENDING_TAG: u8 = 0x04;

/// The length of an encoded [`BodyRef`].
const REF_LEN: usize = 21;

/// What a body tree holds for one record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stored<'a> {
    /// The body itself, in sled (older stores: format bytes `0x00`, `0x01`); its wrapped
    /// data key, if any, is in `body_keys`.
    Inline,
    /// A reference into the body log, with the body's wrapped data key (`0x03`) or without
    /// (`0x02`: a body in clear, or a key in `body_keys`).
    Ref(BodyRef, Option<&'a [u8]>),
}

impl Stored<'_> {
    /// Parse a body tree's value (see [`Stored`]).
    pub(crate) fn decode(value: &[u8]) -> Result<Stored<'_>, String> {
        match value.first() {
            Some(&REF_TAG) => Ok(Stored::Ref(BodyRef::parse(value)?, None)),
            Some(&REF_KEYED_TAG) if value.len() > REF_LEN => Ok(Stored::Ref(
                BodyRef::parse(&value[..REF_LEN])?,
                Some(&value[REF_LEN..]),
            )),
            Some(&REF_KEYED_TAG) => Err("a body reference without its data key".into()),
            Some(&PENDING_TAG) => Err("a body that was never given its place".into()),
            _ => Ok(Stored::Inline),
        }
    }
}

/// The value a transaction puts in a body tree for `body`, with its wrapped data key: its
/// commit gives the body a place in the log and stores [`BodyRef::stored`] instead.
pub(crate) fn pending(wrapped: Option<&[u8]>, body: &[u8]) -> Result<Vec<u8>, String> {
    let wrapped = wrapped.unwrap_or_default();
    let len = u8::try_from(wrapped.len())
        .map_err(|_| format!("a wrapped data key of {} bytes", wrapped.len()))?;
    let mut value = Vec::with_capacity(2 + wrapped.len() + body.len());
    value.extend_from_slice(&[PENDING_TAG, len]);
    value.extend_from_slice(wrapped);
    value.extend_from_slice(body);
    Ok(value)
}

/// A [`pending`] value's wrapped key (empty: none) and the offset of its body; `None` if
/// `value` is not one.
pub(crate) fn split_pending(value: &[u8]) -> Option<(&[u8], usize)> {
    match value {
        [PENDING_TAG, len, rest @ ..] if rest.len() >= usize::from(*len) => {
            Some((&rest[..usize::from(*len)], 2 + usize::from(*len)))
        }
        _ => None,
    }
}

/// First bytes of every body file.
const MAGIC: &[u8; 8] = b"PONSBOD1";

/// Bodies start on block boundaries, so that each owns the blocks it is in and erasing it
/// frees them; the header takes the first block.
pub(crate) const BLOCK: u64 = 4096;

/// Size past which the next body starts a new file: ~16,000 bodies of 2 KiB.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// Where one body is: its file, offset and length, and the CRC32 of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyRef {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

impl BodyRef {
    /// The value a body tree holds for the body.
    pub(crate) fn encode(&self) -> [u8; REF_LEN] {
        let mut out = [0; REF_LEN];
        out[0] = REF_TAG;
        out[1..5].copy_from_slice(&self.segment.to_be_bytes());
        out[5..13].copy_from_slice(&self.offset.to_be_bytes());
        out[13..17].copy_from_slice(&self.len.to_be_bytes());
        out[17..21].copy_from_slice(&self.crc.to_be_bytes());
        out
    }

    /// The value a body tree holds for this body: the reference, then the body's wrapped
    /// data key if it has one.
    pub(crate) fn stored(&self, wrapped: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(REF_LEN + wrapped.len());
        out.extend_from_slice(&self.encode());
        if !wrapped.is_empty() {
            out[0] = REF_KEYED_TAG;
            out.extend_from_slice(wrapped);
        }
        out
    }

    /// A reference as [`BodyRef::encode`] wrote it (the log record's form).
    pub(crate) fn decode(value: &[u8]) -> Result<BodyRef, String> {
        if value.first() != Some(&REF_TAG) {
            return Err("not a body reference".into());
        }
        BodyRef::parse(value)
    }

    /// The 21 bytes of a reference, whatever its tag.
    fn parse(value: &[u8]) -> Result<BodyRef, String> {
        if value.len() != REF_LEN {
            return Err(format!(
                "a body reference has {REF_LEN} bytes, this one {}",
                value.len()
            ));
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([value[i], value[i + 1], value[i + 2], value[i + 3]]);
        let mut offset = [0; 8];
        offset.copy_from_slice(&value[5..13]);
        Ok(BodyRef {
            segment: u32_at(1),
            offset: u64::from_be_bytes(offset),
            len: u32_at(13),
            crc: u32_at(17),
        })
    }

    /// The bytes the body owns in its file: its length rounded up to whole blocks.
    fn span(&self) -> u64 {
        u64::from(self.len).div_ceil(BLOCK) * BLOCK
    }

    fn end(&self) -> u64 {
        self.offset + self.span()
    }
}

impl std::fmt::Display for BodyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} byte {} ({} bytes)",
            file_name(self.segment),
            self.offset,
            self.len
        )
    }
}

/// Why a body could not be read back.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Its bytes are not what was written (CRC or length): corruption, or an erasure that
    /// punched them out after the reference was read.
    Mismatch(String),
    /// The file could not be read.
    Store(StoreError),
}

/// The body files of one store.
pub(crate) struct Bodies {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    /// Every body file, open for reading and writing.
    files: RwLock<BTreeMap<u32, Arc<File>>>,
    /// Where the next body goes, and what to sync.
    state: Mutex<State>,
}

struct State {
    /// The file the next body goes into and the offset in it.
    segment: u32,
    tail: u64,
    /// Files written since the last [`Bodies::sync`].
    unsynced: BTreeSet<u32>,
    /// Whether a file was created since then (the directory must be synced too).
    created: bool,
    /// Places erased by commits, to be punched out before the next sync
    /// ([`Bodies::erase_later`]).
    to_erase: Vec<BodyRef>,
}

impl Bodies {
    /// Open the body files in `dir` (created if missing); the next body goes after the
    /// last one written.
    pub(crate) fn open(dir: &Path) -> Result<Bodies, StoreError> {
        Bodies::open_with(dir, SEGMENT_BYTES)
    }

    pub(crate) fn open_with(dir: &Path, segment_bytes: u64) -> Result<Bodies, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files = BTreeMap::new();
        // The length of the newest file so far: where its next body goes.
        let mut last_len = 0;
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(segment) = name
                .strip_suffix(".body")
                .filter(|n| n.len() == 8)
                .and_then(|n| n.parse::<u32>().ok())
            else {
                return Err(StoreError::Corrupt {
                    what: "body log directory",
                    key: path.display().to_string(),
                    reason: "not a body file (expected <segment:08>.body)".into(),
                });
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            let mut magic = [0; MAGIC.len()];
            let len = file.metadata().map_err(io(&path))?.len();
            if len == 0 {
                // Created, then a crash before its header was written: no body is in it
                // yet (they are written after the header), and it gets its header now.
                file.write_all_at(MAGIC, 0).map_err(io(&path))?;
            } else {
                file.read_exact_at(&mut magic, 0).map_err(io(&path))?;
                if &magic != MAGIC {
                    return Err(StoreError::Corrupt {
                        what: "body log",
                        key: path.display().to_string(),
                        reason: "not a Pons body file".into(),
                    });
                }
            }
            if files
                .last_key_value()
                .is_none_or(|(&last, _)| segment > last)
            {
                last_len = len;
            }
            files.insert(segment, Arc::new(file));
        }
        let (segment, tail) = match files.last_key_value() {
            None => (1, BLOCK),
            Some((&segment, _)) => (segment, last_len.div_ceil(BLOCK).max(1) * BLOCK),
        };
        Ok(Bodies {
            dir: dir.to_path_buf(),
            segment_bytes,
            files: RwLock::new(files),
            state: Mutex::new(State {
                segment,
                tail,
                unsynced: BTreeSet::new(),
                created: false,
                to_erase: Vec::new(),
            }),
        })
    }

    /// Assign a place to `body`, after every place assigned before. The caller holds the
    /// store's write lock, so places are in log order; nothing is written yet.
    pub(crate) fn place(&self, body: &[u8]) -> Result<BodyRef, StoreError> {
        let len = u32::try_from(body.len()).map_err(|_| StoreError::CommitTooLarge {
            bytes: body.len(),
            max: u32::MAX as usize,
        })?;
        let mut state = self.lock();
        let mut at = BodyRef {
            segment: state.segment,
            offset: state.tail,
            len,
            crc: crc32fast::hash(body),
        };
        if at.offset > BLOCK && at.end() > self.segment_bytes {
            at.segment += 1;
            at.offset = BLOCK;
        }
        state.segment = at.segment;
        state.tail = at.end();
        Ok(at)
    }

    /// Write each body at its place (assigned by [`Bodies::place`], or read back from the
    /// log in recovery), bodies that follow each other in one file in one write.
    pub(crate) fn write(&self, bodies: &[(BodyRef, IVec)]) -> Result<(), StoreError> {
        let mut i = 0;
        while i < bodies.len() {
            let (first, _) = bodies[i];
            let mut end = first.end();
            let mut j = i + 1;
            while j < bodies.len()
                && bodies[j].0.segment == first.segment
                && bodies[j].0.offset == end
            {
                end = bodies[j].0.end();
                j += 1;
            }
            let run = &bodies[i..j];
            let file = self.file(first.segment, true)?;
            let write = if let [(at, body)] = run {
                file.write_all_at(body, at.offset)
            } else {
                let last = &run[run.len() - 1];
                let mut buf =
                    vec![0; (last.0.offset + u64::from(last.0.len) - first.offset) as usize];
                for (at, body) in run {
                    let from = (at.offset - first.offset) as usize;
                    buf[from..from + body.len()].copy_from_slice(body);
                }
                file.write_all_at(&buf, first.offset)
            };
            write.map_err(io(&self.path(first.segment)))?;
            let mut state = self.lock();
            state.unsynced.insert(first.segment);
            // Recovery may write beyond what was found in the files.
            if (first.segment, end) > (state.segment, state.tail) {
                state.segment = first.segment;
                state.tail = end;
            }
            drop(state);
            i = j;
        }
        Ok(())
    }

    /// Read the body at `at` and check it is what was written.
    pub(crate) fn read(&self, at: &BodyRef) -> Result<Vec<u8>, ReadError> {
        let file = self.file(at.segment, false).map_err(ReadError::Store)?;
        let mut body = vec![0; at.len as usize];
        match file.read_exact_at(&mut body, at.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ReadError::Mismatch("the file ends before the body".into()))
            }
            Err(e) => return Err(ReadError::Store(io(&self.path(at.segment))(e))),
        }
        if crc32fast::hash(&body) != at.crc {
            return Err(ReadError::Mismatch(
                "the body's checksum does not match its reference".into(),
            ));
        }
        Ok(body)
    }

    /// Erase the bodies at `places`: their blocks are punched out of their files (written
    /// with zeros where the file system cannot punch).
    pub(crate) fn erase(&self, places: &[BodyRef]) -> Result<(), StoreError> {
        for at in places {
            let Ok(file) = self.file(at.segment, false) else {
                // No such file: nothing of the body is on disk.
                continue;
            };
            let path = self.path(at.segment);
            let punched = nix::fcntl::fallocate(
                file.as_raw_fd(),
                nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                at.offset as i64,
                at.span() as i64,
            );
            if punched.is_err() {
                let zeros = vec![0; at.span() as usize];
                file.write_all_at(&zeros, at.offset).map_err(io(&path))?;
            }
            self.lock().unsynced.insert(at.segment);
        }
        Ok(())
    }

    /// Erase the bodies at `places` at the next [`Bodies::sync`], on the checkpointer's
    /// thread rather than in the commit that erased them: nothing refers to them any more
    /// (their references and data keys are gone with that commit), and the log segments
    /// that hold the commit are retired only after that sync (an erasure asks for it at
    /// once), so the places are punched out before anything could forget them.
    pub(crate) fn erase_later(&self, places: &[BodyRef]) {
        if !places.is_empty() {
            self.lock().to_erase.extend_from_slice(places);
        }
    }

    /// Punch out the places erased since the last sync ([`Bodies::erase_later`]), then
    /// fdatasync every file written since (and the directory, if a file was created):
    /// before the log segments holding the same bodies or erasures are retired.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let to_erase = std::mem::take(&mut self.lock().to_erase);
        if let Err(e) = self.erase(&to_erase) {
            // Punched next time, then (punching twice is harmless).
            self.lock().to_erase.extend(to_erase);
            return Err(e);
        }
        let (unsynced, created) = {
            let mut state = self.lock();
            (
                std::mem::take(&mut state.unsynced),
                std::mem::take(&mut state.created),
            )
        };
        let done = (|| {
            for &segment in &unsynced {
                let file = self.file(segment, false)?;
                file.sync_data().map_err(io(&self.path(segment)))?;
            }
            if created {
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&self.dir))?;
            }
            Ok(())
        })();
        if done.is_err() {
            // Synced next time, then.
            let mut state = self.lock();
            state.unsynced.extend(unsynced);
            state.created |= created;
        }
        done
    }

    /// The open file of `segment`; created (with its header) if `create`.
    fn file(&self, segment: u32, create: bool) -> Result<Arc<File>, StoreError> {
        if let Some(file) = self
            .files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&segment)
        {
            return Ok(Arc::clone(file));
        }
        let path = self.path(segment);
        if !create {
            return Err(StoreError::Corrupt {
                what: "body log",
                key: path.display().to_string(),
                reason: "a body reference names a file that does not exist".into(),
            });
        }
        let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = files.get(&segment) {
            return Ok(Arc::clone(file));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all_at(MAGIC, 0).map_err(io(&path))?;
        let file = Arc::new(file);
        files.insert(segment, Arc::clone(&file));
        drop(files);
        let mut state = self.lock();
        state.created = true;
        state.unsynced.insert(segment);
        Ok(file)
    }

    fn path(&self, segment: u32) -> PathBuf {
        self.dir.join(file_name(segment))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn file_name(segment: u32) -> String {
    format!("{segment:08}.body")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: u8, len: usize) -> IVec {
        IVec::from(vec![n; len])
    }

    fn store(bodies: &Bodies, items: &[IVec]) -> Vec<BodyRef> {
        let placed: Vec<(BodyRef, IVec)> = items
            .iter()
            .map(|b| (bodies.place(b).expect("place"), b.clone()))
            .collect();
        bodies.write(&placed).expect("write");
        placed.into_iter().map(|(at, _)| at).collect()
    }

    #[test]
    fn bodies_read_back_across_files_and_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let items: Vec<IVec> = (0..40u8).map(|n| body(n, 100 + 300 * n as usize)).collect();
        let bodies = Bodies::open_with(dir.path(), 32 * BLOCK).expect("open");
        let places = store(&bodies, &items);
        assert!(places.iter().any(|p| p.segment > 1), "{places:?}");
        for (at, b) in places.iter().zip(&items) {
            assert_eq!(at.offset % BLOCK, 0);
            assert!(at.end() <= 32 * BLOCK || at.offset == BLOCK);
            assert_eq!(bodies.read(at).expect("read"), b.to_vec());
        }
        bodies.sync().expect("sync");
        drop(bodies);
        let bodies = Bodies::open_with(dir.path(), 32 * BLOCK).expect("reopen");
        for (at, b) in places.iter().zip(&items) {
            assert_eq!(bodies.read(at).expect("read"), b.to_vec());
        }
        // The next body goes after the last one, never over it.
        let next = bodies.place(&body(99, 10)).expect("place");
        let last = places.last().expect("last");
        assert!(
            (next.segment, next.offset) >= (last.segment, last.end()),
            "{next:?} {last:?}"
        );
    }

    #[test]
    fn a_reference_round_trips_and_a_body_stored_in_sled_is_not_one() {
        let at = BodyRef {
            segment: 7,
            offset: 12 * BLOCK,
            len: 2345,
            crc: 0xdead_beef,
        };
        assert_eq!(BodyRef::decode(&at.encode()), Ok(at));
        assert_eq!(Stored::decode(&at.encode()), Ok(Stored::Ref(at, None)));
        assert_eq!(Stored::decode(&at.stored(&[])), Ok(Stored::Ref(at, None)));
        let keyed = at.stored(&[9; 60]);
        assert_eq!(keyed.len(), 81);
        assert_eq!(
            Stored::decode(&keyed),
            Ok(Stored::Ref(at, Some(&[9; 60][..])))
        );
        assert_eq!(Stored::decode(&[0x01, 1, 2, 3]), Ok(Stored::Inline));
        assert_eq!(Stored::decode(&[0x00]), Ok(Stored::Inline));
        let err = Stored::decode(&at.encode()[..20]).expect_err("short");
        assert!(err.contains("21 bytes"), "{err}");
        let mut bare = at.encode();
        bare[0] = REF_KEYED_TAG;
        let err = Stored::decode(&bare).expect_err("no key");
        assert!(err.contains("without its data key"), "{err}");
        let body = [0x01, 5, 6, 7];
        let value = pending(Some(&[8; 60]), &body).expect("pending");
        assert_eq!(split_pending(&value), Some((&[8; 60][..], 62)));
        assert_eq!(&value[62..], &body);
        let err = Stored::decode(&value).expect_err("pending");
        assert!(err.contains("never given its place"), "{err}");
        assert_eq!(split_pending(&body), None);
    }

    #[test]
    fn damaged_bytes_are_refused_at_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bodies = Bodies::open(dir.path()).expect("open");
        let at = store(&bodies, &[body(5, 3000)])[0];
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("00000001.body"))
            .expect("open file");
        file.write_all_at(&[6], at.offset + 100).expect("damage");
        match bodies.read(&at) {
            Err(ReadError::Mismatch(why)) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        let missing = BodyRef { segment: 9, ..at };
        match bodies.read(&missing) {
            Err(ReadError::Store(StoreError::Corrupt { reason, .. })) => {
                assert!(reason.contains("does not exist"), "{reason}")
            }
            other => panic!("expected a missing file, got {other:?}"),
        }
    }

    #[test]
    fn an_erased_body_is_in_no_file_and_its_neighbours_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bodies = Bodies::open(dir.path()).expect("open");
        let items = [body(0xa1, 2100), body(0xb2, 5000), body(0xc3, 2100)];
        let places = store(&bodies, &items);
        bodies.erase(&places[1..2]).expect("erase");
        bodies.sync().expect("sync");
        let data = std::fs::read(dir.path().join("00000001.body")).expect("read file");
        assert!(!data.windows(64).any(|w| w.iter().all(|&b| b == 0xb2)));
        assert!(data.windows(64).any(|w| w.iter().all(|&b| b == 0xa1)));
        assert_eq!(bodies.read(&places[0]).expect("first"), items[0].to_vec());
        assert_eq!(bodies.read(&places[2]).expect("third"), items[2].to_vec());
        assert!(matches!(
            bodies.read(&places[1]),
            Err(ReadError::Mismatch(_))
        ));

        // As a commit erases: punched out at the next sync.
        bodies.erase_later(&places[2..]);
        assert_eq!(
            bodies.read(&places[2]).expect("until the sync"),
            items[2].to_vec()
        );
        bodies.sync().expect("sync");
        let data = std::fs::read(dir.path().join("00000001.body")).expect("read file");
        assert!(!data.windows(64).any(|w| w.iter().all(|&b| b == 0xc3)));
    }

    #[test]
    fn a_file_created_without_its_header_gets_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("00000001.body"), b"").expect("empty file");
        let bodies = Bodies::open(dir.path()).expect("open");
        let at = store(&bodies, &[body(4, 100)])[0];
        drop(bodies);
        let bodies = Bodies::open(dir.path()).expect("reopen");
        assert_eq!(bodies.read(&at).expect("read"), vec![4; 100]);
    }

    #[test]
    fn a_foreign_file_in_the_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        match Bodies::open(dir.path()) {
            Err(StoreError::Corrupt { what, reason, .. }) => {
                assert_eq!(what, "body log directory");
                assert!(reason.contains("<segment:08>.body"), "{reason}");
            }
            other => panic!("expected a refusal, got {:?}", other.err()),
        }
        std::fs::remove_file(dir.path().join("notes.txt")).expect("remove");
        std::fs::write(dir.path().join("00000001.body"), b"NOTABODYFILE").expect("write");
        match Bodies::open(dir.path()) {
            Err(StoreError::Corrupt { reason, .. }) => {
                assert!(reason.contains("not a Pons body file"), "{reason}")
            }
            other => panic!("expected a refusal, got {:?}", other.err()),
        }
    }
}
