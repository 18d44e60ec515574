//! The store's write-ahead log: what makes a commit durable (issue 7).
//!
//! sled 0.34 makes a write durable by writing its log buffer out, `pwrite` and
//! `sync_file_range`, and every transaction rolls that buffer twice (`pin_log`), so a store
//! that flushed every batch wrote ~100 KB per record (whole pages rewritten at every synced
//! write) and waited for three synced writes per batch. Here a commit is made durable by
//! **one append to this log and one `fdatasync`**: the batch's net changes (each key's final
//! value, or its removal), nothing else. sled holds the same changes, applied in memory at
//! commit without a transaction, and writes them out on its own (every 500 ms, and at each
//! checkpoint); it is the index the store reads, this log is what recovery trusts.
//!
//! - A commit appends its record (under the store's write lock, so the log is in commit
//!   order), then applies the changes to sled under the visibility lock (readers see all of a
//!   commit or none of it), with `meta[wal_applied] = seq` as its last change.
//! - Recovery ([`recover`]) reads `wal_applied` from what sled recovered (sled recovers a
//!   prefix of its writes, so every commit up to it is whole), replays every later record in
//!   order and flushes sled. Replaying a record that sled partly kept is harmless: a record
//!   holds final values, not increments.
//! - A segment grows to [`SEGMENT_BYTES`]; the next commit starts a new one (the old one
//!   fdatasync'ed first, so that a torn record can only be in the last segment) and the
//!   checkpointer flushes sled and then retires the older segments: deleted, or, with sync
//!   on, the newest kept as the spare the next segment is written over.
//!
//! Format (little-endian lengths, big-endian sequence numbers): a segment `{first seq:020}.wal`
//! starts with [`MAGIC`]; each record is `len: u32 ‖ crc32(payload): u32 ‖ payload`, the
//! payload `seq: u64 ‖ (tree: u8 ‖ key len: u32 ‖ key ‖ 0 | 1 ‖ [value len: u32 ‖ value])*`.
//! Tree numbers are [`TREES`]' positions and part of the format; two more numbers carry the
//! body log's changes (`bodies.rs`): [`BODY_WRITE`] (key: the body's `BodyRef`, value: the
//! body) and [`BODY_ERASE`] (key: the `BodyRef` erased, no value). The body trees' values in
//! the record are then the references, as sled holds them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use sled::IVec;

use crate::bodies::BodyRef;
use crate::StoreError;

/// The trees a commit may change, by their number in the log.
pub(crate) const TREES: [&str; 13] = [
    "outbox",
    "outbox_body",
    "outbox_pending",
    "inbox",
    "inbox_body",
    "inbox_arrival",
    "receipts",
    "journal",
    "meta",
    "feed",
    "body_keys",
    "retention",
    "deadlines",
];

/// The key in the `meta` tree of the last record applied to sled.
pub(crate) const APPLIED_KEY: &[u8] = b"wal_applied";

/// First bytes of every segment.
const MAGIC: &[u8; 8] = b"PONSWAL1";

/// Size past which the next commit starts a new segment: ~13,000 records of 2 KiB at one
/// node (~5 KB of log per record's commits there). Recovery replays at most the segments
/// not yet checkpointed, one or two; 8 MiB segments were measured slower (a checkpoint, a
/// sled flush and fdatasync, every ~800 records).
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// The largest record: a commit whose changes take more is refused whole (a batch is at
/// most 256 writes, each at most a 16 MiB frame and its metadata).
const MAX_RECORD: u32 = 1 << 30;

/// The number in a log record of a body written to the body log (see `bodies.rs`).
const BODY_WRITE: u8 = 0x80;

/// The number in a log record of a body erased from the body log.
const BODY_ERASE: u8 = 0x81;

/// One commit's net changes: per tree, each key's final value (`None`: removed).
#[derive(Default)]
pub(crate) struct Writes {
    pub(crate) trees: [BTreeMap<IVec, Option<IVec>>; TREES.len()],
    /// Bodies the commit writes to the body log at the places assigned to them (the body
    /// trees hold their references); filled in at commit.
    pub(crate) bodies: Vec<(BodyRef, IVec)>,
    /// Places in the body log the commit erases; filled in at commit.
    pub(crate) erased: Vec<BodyRef>,
    /// Whether the commit erases a record's body (not part of the record: see
    /// `Shared::retire_for_erasure`).
    pub(crate) erases: bool,
}

impl Writes {
    pub(crate) fn is_empty(&self) -> bool {
        self.trees.iter().all(BTreeMap::is_empty)
    }

    /// The record of commit `seq` as appended to the log.
    fn encode(&self, seq: u64) -> Vec<u8> {
        let size: usize = self
            .trees
            .iter()
            .flat_map(|t| t.iter())
            .map(|(k, v)| 10 + k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
            + self.bodies.iter().map(|(_, b)| 40 + b.len()).sum::<usize>()
            + self.erased.len() * 30;
        let mut out = Vec::with_capacity(16 + size);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&seq.to_be_bytes());
        for (id, tree) in self.trees.iter().enumerate() {
            for (key, value) in tree {
                out.push(id as u8);
                put_bytes(&mut out, key);
                match value {
                    None => out.push(0),
                    Some(v) => {
                        out.push(1);
                        put_bytes(&mut out, v);
                    }
                }
            }
        }
        for (at, body) in &self.bodies {
            out.push(BODY_WRITE);
            put_bytes(&mut out, &at.encode());
            out.push(1);
            put_bytes(&mut out, body);
        }
        for at in &self.erased {
            out.push(BODY_ERASE);
            put_bytes(&mut out, &at.encode());
            out.push(0);
        }
        let len = u32::try_from(out.len() - 8).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(&out[8..]);
        out[..4].copy_from_slice(&len.to_le_bytes());
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parse a record's payload: its seq and changes.
    fn decode(payload: &[u8]) -> Result<(u64, Writes), String> {
        let mut r = Reader(payload);
        let seq = u64::from_be_bytes(r.take(8)?.try_into().map_err(|_| "seq")?);
        let mut writes = Writes::default();
        while !r.0.is_empty() {
            let id = r.take(1)?[0];
            if id == BODY_WRITE || id == BODY_ERASE {
                let at = BodyRef::decode(r.bytes()?)?;
                match (id, r.take(1)?[0]) {
                    (BODY_WRITE, 1) => writes.bodies.push((at, IVec::from(r.bytes()?))),
                    (BODY_ERASE, 0) => writes.erased.push(at),
                    (_, kind) => return Err(format!("body change {id} has kind {kind}")),
                }
                continue;
            }
            let id = id as usize;
            let tree = writes
                .trees
                .get_mut(id)
                .ok_or_else(|| format!("tree number {id} is not one of the {}", TREES.len()))?;
            let key = IVec::from(r.bytes()?);
            let value = match r.take(1)?[0] {
                0 => None,
                1 => Some(IVec::from(r.bytes()?)),
                other => return Err(format!("change kind {other} is neither 0 nor 1")),
            };
            tree.insert(key, value);
        }
        Ok((seq, writes))
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("{n} bytes expected, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "length")?);
        self.take(len as usize)
    }
}

/// The segment being appended to.
pub(crate) struct Wal {
    dir: PathBuf,
    file: Arc<File>,
    /// The first record of the segment.
    first: u64,
    len: u64,
    sync: bool,
    /// [`SEGMENT_BYTES`], smaller in tests.
    pub(crate) segment_bytes: u64,
    /// [`MAX_RECORD`], smaller in tests.
    max_record: usize,
    /// The zero-filling ahead of the write position (sync on only).
    room: Arc<Room>,
    /// The segment's bytes from the last [`BLOCK`] boundary at or before `len` up to `len`.
    /// Each append writes them again ahead of its record, and zeros after the record up to
    /// the next boundary, so every write covers whole blocks: the kernel then never reads a
    /// block from the disk to complete a partial write of a page it does not hold (the
    /// filler's zeros bypass the page cache, and a recycled spare's pages may be gone). Such
    /// a read is synchronous, on the commit's path.
    tail: Vec<u8>,
}

/// The log writes whole blocks of this size (see [`Wal::tail`]); it is also the alignment of
/// the filler's chunks and buffer, which `O_DIRECT` asks of both.
const BLOCK: u64 = 4096;

/// A segment to start: the checkpointer may delete every segment before it once sled is
/// flushed.
pub(crate) struct Rolled {
    pub(crate) first: u64,
}

impl Wal {
    /// Start the log in `dir` (`<store>/wal`) with a new segment whose first record is
    /// `first`; `sync`: fdatasync segments and the directory.
    pub(crate) fn start(
        dir: &Path,
        first: u64,
        sync: bool,
        room: Arc<Room>,
    ) -> Result<Wal, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let file = open_segment(dir, first, sync, true)?;
        room.new_segment(&file)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            first,
            len: MAGIC.len() as u64,
            sync,
            segment_bytes: SEGMENT_BYTES,
            max_record: MAX_RECORD as usize,
            room,
            tail: MAGIC.to_vec(),
        })
    }

    /// Append the record of commit `seq` (written, not synced: see [`Wal::segment`]).
    /// Starts a new segment first if this one is full, and says so.
    pub(crate) fn append(
        &mut self,
        seq: u64,
        writes: &Writes,
    ) -> Result<Option<Rolled>, StoreError> {
        let record = writes.encode(seq);
        if record.len() - 8 > self.max_record {
            // Its length would not fit the header, and recovery would take it for the end.
            return Err(StoreError::CommitTooLarge {
                bytes: record.len() - 8,
                max: self.max_record,
            });
        }
        let rolled = if self.len >= self.segment_bytes {
            self.roll(seq, true)?;
            Some(Rolled { first: seq })
        } else {
            None
        };
        // Whole blocks, from the block `len` is in to the one the record ends in.
        let start = self.len - self.tail.len() as u64;
        let end = self.len + record.len() as u64;
        let written_end = end.next_multiple_of(BLOCK);
        let mut out = Vec::with_capacity((written_end - start) as usize);
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(&record);
        out.resize((written_end - start) as usize, 0);
        if self.sync {
            self.room
                .before_write(&self.file, start, written_end, self.segment_bytes);
        }
        self.file.write_all_at(&out, start).map_err(io(&self.dir))?;
        self.len = end;
        let kept = (end % BLOCK) as usize;
        let at = (end - start) as usize - kept;
        self.tail.clear();
        self.tail.extend_from_slice(&out[at..at + kept]);
        Ok(rolled)
    }

    /// Start a segment at `next` (the next record) in a new file, never the spare: after an
    /// erasure, so that every older segment can be deleted. If the current segment has no
    /// record yet, it is cut to its header instead (it may be a reused file).
    pub(crate) fn restart(&mut self, next: u64) -> Result<(), StoreError> {
        if self.first == next {
            // No fill may run on the file while it is cut (none should: a segment is filled
            // only once it holds records).
            let _quiet = self.room.quiet();
            self.file
                .set_len(MAGIC.len() as u64)
                .map_err(io(&self.dir))?;
            if self.sync {
                self.file.sync_all().map_err(io(&self.dir))?;
            }
            self.len = MAGIC.len() as u64;
            self.tail = MAGIC.to_vec();
            return self.room.new_segment(&self.file);
        }
        self.roll(next, false)
    }

    fn roll(&mut self, first: u64, use_spare: bool) -> Result<(), StoreError> {
        // Everything in the old segment is synced before the new one exists: a torn record
        // can only be at the end of the last segment, and a writer waiting on the old
        // segment's records is covered by this sync.
        if self.sync {
            self.file.sync_data().map_err(io(&self.dir))?;
        }
        self.file = Arc::new(open_segment(&self.dir, first, self.sync, use_spare)?);
        self.room.new_segment(&self.file)?;
        self.first = first;
        self.len = MAGIC.len() as u64;
        self.tail = MAGIC.to_vec();
        Ok(())
    }

    /// The segment being appended to, for fdatasync outside the write lock: a record
    /// appended before this call is in it or in a segment already synced.
    pub(crate) fn segment(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }
}

/// How much of a segment the filler writes with zeros at a time.
const FILL_CHUNK: u64 = 8 << 20;

/// A new segment is filled only once this much of it is written: a store that writes
/// little (200 in-process senders of ~20 records each in `pons bench --scenario fan-in`)
/// never pays for zeros it would not use.
const FILL_AFTER: u64 = 1 << 20;

/// How much of a chunk the filler writes between two fdatasyncs.
const FILL_PIECE: usize = 256 << 10;

/// How far ahead of the write position the filler starts; the next fill is asked for when
/// the write position comes within twice this of the filled end.
const FILL_AHEAD: u64 = 1 << 20;

/// Zero-filling a segment ahead of its write position (sync on): an fdatasync after writing
/// over blocks already written (with zeros) writes no file metadata; after an append it
/// must also write the new size and the new extents (0.6x the time here, see `open_segment`).
/// Recycled segments are written through already; a new one (a new store's first ones,
/// the one after an erasure) is filled in the background, a chunk at a time, by the
/// filler thread, so no store pays a whole segment of zeros up front.
///
/// The log never writes into a chunk being filled (it waits: the filler keeps
/// [`FILL_AHEAD`] ahead, so it waits only if the disk is slower than the log's appends),
/// and a segment is recycled only once no fill runs on it (`running`).
#[derive(Default)]
pub(crate) struct Room {
    state: Mutex<RoomState>,
    /// Woken when a fill ends, or one is asked for, or the store closes.
    changed: Condvar,
    /// Held by the filler while it writes: a segment is not recycled under it.
    running: Mutex<()>,
}

#[derive(Default)]
struct RoomState {
    /// Bumped at every new segment: a fill of an older one no longer counts.
    generation: u64,
    /// Where the current segment's written-through region ends.
    filled: u64,
    /// The chunk of the current segment asked for or being filled.
    filling: Option<Fill>,
    /// Whether the filler has taken `filling`.
    taken: bool,
    /// The store is closing: the filler stops.
    stop: bool,
}

/// A chunk to fill with zeros.
#[derive(Clone)]
struct Fill {
    file: Arc<File>,
    start: u64,
    end: u64,
    generation: u64,
}

impl Room {
    /// A new segment is current: what it already holds (a recycled file's length) is
    /// written through.
    fn new_segment(&self, file: &File) -> Result<(), StoreError> {
        let len = file
            .metadata()
            .map_err(|source| StoreError::Io {
                path: "write-ahead log segment".into(),
                source,
            })?
            .len();
        let mut state = self.lock();
        state.generation += 1;
        state.filled = len;
        state.filling = None;
        state.taken = false;
        self.changed.notify_all();
        Ok(())
    }

    /// Before the log writes `len..end` of `file`: wait while that overlaps a chunk being
    /// filled, and ask for the next chunk if the write position nears the filled end.
    fn before_write(&self, file: &Arc<File>, len: u64, end: u64, limit: u64) {
        let mut state = self.lock();
        while let Some(f) = &state.filling {
            if len < f.end && end > f.start {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            } else {
                break;
            }
        }
        if state.filling.is_none()
            && end >= FILL_AFTER
            && state.filled < limit
            && end + 2 * FILL_AHEAD > state.filled
        {
            // Block-aligned, so that the filler can write it without the page cache.
            let start = state.filled.max(end + FILL_AHEAD).next_multiple_of(BLOCK);
            state.filling = Some(Fill {
                file: Arc::clone(file),
                start,
                end: start + FILL_CHUNK,
                generation: state.generation,
            });
            state.taken = false;
            self.changed.notify_all();
        }
    }

    /// The filler thread's loop: fill each chunk asked for, until the store closes.
    pub(crate) fn run_filler(&self) {
        let buffer = vec![0u8; FILL_PIECE + BLOCK as usize];
        let offset = buffer.as_ptr().align_offset(BLOCK as usize);
        let zeros = &buffer[offset..offset + FILL_PIECE];
        loop {
            let fill = {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        return;
                    }
                    match &state.filling {
                        Some(f) if !state.taken => {
                            let f = f.clone();
                            state.taken = true;
                            break f;
                        }
                        _ => {
                            state = self
                                .changed
                                .wait(state)
                                .unwrap_or_else(PoisonError::into_inner)
                        }
                    }
                }
            };
            let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            // A segment that stopped being current while the fill waited is not filled:
            // it may already be retired (and `running` keeps it from being recycled while
            // a fill that started in time runs).
            let current = self.lock().generation == fill.generation;
            // A panic here must not leave the chunk marked in flight: the log would wait for
            // it forever.
            let done = if current {
                let write = std::panic::AssertUnwindSafe(|| fill.write(zeros));
                std::panic::catch_unwind(write)
                    .unwrap_or_else(|_| Err(std::io::Error::other("the fill panicked")))
            } else {
                Ok(())
            };
            drop(running);
            if let Err(e) = &done {
                tracing::warn!(error = %e, "write-ahead log: a segment could not be filled ahead; the log appends instead");
            }
            let mut state = self.lock();
            if state.generation == fill.generation {
                if done.is_ok() && current {
                    state.filled = state.filled.max(fill.end);
                }
                state.filling = None;
            }
            self.changed.notify_all();
        }
    }

    /// Stop the filler (the store is closing).
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }

    /// Wait until no fill runs, and keep it so while the guard lives: before a segment is
    /// recycled.
    fn quiet(&self) -> std::sync::MutexGuard<'_, ()> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Fill {
    /// Writes the chunk a piece at a time, each synced before the next: the log's own
    /// fdatasyncs never queue behind more than one piece of zeros.
    ///
    /// The pieces go to the disk without the page cache (`O_DIRECT`, through a second
    /// descriptor of the segment) where the file system allows it: copying 8 MiB of zeros
    /// into the page cache took ~40 ms of a core per chunk here (perf:
    /// `copy_folio_from_iter_atomic`), and the log's commits waited for that core (the
    /// open loop's p99 at 1,000 records/s came from those windows). Elsewhere (tmpfs, a
    /// file system that refuses `O_DIRECT`) they are written through the page cache.
    fn write(&self, zeros: &[u8]) -> std::io::Result<()> {
        let mut direct = direct_descriptor(&self.file);
        let mut at = self.start;
        while at < self.end {
            let n = (self.end - at).min(zeros.len() as u64) as usize;
            let piece = &zeros[..n];
            let written = match &direct {
                Some(d) => d.write_all_at(piece, at),
                None => self.file.write_all_at(piece, at),
            };
            match written {
                // A file system that opens with `O_DIRECT` but wants another alignment.
                Err(e) if direct.is_some() && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    direct = None;
                    self.file.write_all_at(piece, at)?;
                }
                other => other?,
            }
            self.file.sync_data()?;
            at += n as u64;
        }
        Ok(())
    }
}

/// A second descriptor of `file`, opened with `O_DIRECT`, if the file system allows it.
fn direct_descriptor(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// The segment that starts at record `first`: the spare renamed, if there is one (its
/// blocks are allocated and written, so an fdatasync after overwriting them writes no
/// file metadata: ~0.6x the time of one after an append, measured here), else a new file.
fn open_segment(dir: &Path, first: u64, sync: bool, use_spare: bool) -> Result<File, StoreError> {
    let path = segment_path(dir, first);
    let spare = dir.join(SPARE);
    let reused = use_spare
        && match std::fs::rename(&spare, &path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(&spare)(e)),
        };
    let file = OpenOptions::new()
        .write(true)
        .create_new(!reused)
        .open(&path)
        .map_err(io(&path))?;
    // A reused file holds old records after the header; the first one written here ends
    // them (see `replay`).
    file.write_all_at(MAGIC, 0).map_err(io(&path))?;
    if sync {
        file.sync_data().map_err(io(&path))?;
        sync_dir(dir)?;
    }
    Ok(file)
}

/// The name of the segment-sized file the next segment will be (see [`open_segment`]).
const SPARE: &str = "spare";

/// Make `recycled` (a segment sled now holds) the spare, or delete it if there is one.
/// Called by the checkpointer and at open, never on a commit's path.
///
/// No spare is written with zeros at open: it would cost a segment's worth of writes for
/// every new store (200 in-process senders: 37 s to start). A new store appends to its
/// first segment; its next segments are written over recycled ones.
pub(crate) fn prepare_spare(dir: &Path, recycled: &Path) -> Result<(), StoreError> {
    let spare = dir.join(SPARE);
    if spare.exists() {
        std::fs::remove_file(recycled).map_err(io(recycled))?;
        return Ok(());
    }
    std::fs::rename(recycled, &spare).map_err(io(recycled))?;
    sync_dir(dir)
}

/// Delete the spare, if any.
pub(crate) fn remove_spare(dir: &Path) -> Result<(), StoreError> {
    let spare = dir.join(SPARE);
    match std::fs::remove_file(&spare) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&spare)(e)),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// The segments in `dir`, by first record.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == SPARE || name == "spare.tmp" {
            continue;
        }
        match name
            .strip_suffix(".wal")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(first) => out.push((first, path)),
            None => {
                return Err(StoreError::Corrupt {
                    what: "write-ahead log directory",
                    key: path.display().to_string(),
                    reason: "not a segment (expected <first seq>.wal)".into(),
                })
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Remove every segment in `dir` whose records all come before `first` (sled holds them
/// now); with `recycle`, the newest of them becomes the spare if there is none.
pub(crate) fn retire_before(
    dir: &Path,
    first: u64,
    recycle: bool,
    room: &Room,
) -> Result<(), StoreError> {
    let old: Vec<PathBuf> = segments(dir)?
        .into_iter()
        .filter(|(start, _)| *start < first)
        .map(|(_, path)| path)
        .collect();
    for (i, path) in old.iter().enumerate() {
        if recycle && i + 1 == old.len() {
            let _quiet = room.quiet();
            prepare_spare(dir, path)?;
        } else {
            std::fs::remove_file(path).map_err(io(path))?;
        }
    }
    Ok(())
}

/// Read every record of the segments in `dir`, in order, and hand each to `apply`.
///
/// A segment's records run from its header while each is whole, passes its checksum and
/// has the next sequence number; what follows is not the log (a record a crash cut short,
/// never acknowledged, or the old records of a reused file). The next segment must then
/// start exactly where the one before ended: a segment is synced before the next one is
/// started, so a gap means an acknowledged record was damaged, and is refused.
pub(crate) fn replay(
    dir: &Path,
    mut apply: impl FnMut(u64, Writes) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut previous: Option<(u64, String)> = None;
    for (first, path) in segments(dir)? {
        if let Some((expected, why)) = &previous {
            if first != *expected {
                return Err(StoreError::Corrupt {
                    what: "write-ahead log",
                    key: path.display().to_string(),
                    reason: format!(
                        "the segment starts at record {first} where {expected} was expected; \
                         the segment before ends with {why}"
                    ),
                });
            }
        }
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io(&path))?;
        if data.len() >= MAGIC.len() && &data[..MAGIC.len()] != MAGIC {
            return Err(StoreError::Corrupt {
                what: "write-ahead log",
                key: path.display().to_string(),
                reason: "not a Pons write-ahead log segment".into(),
            });
        }
        let mut at = MAGIC.len().min(data.len());
        let mut next = first;
        let end = loop {
            if at == data.len() {
                break "its last record".to_string();
            }
            match read_record(&data[at..]) {
                Ok((seq, writes, used)) if seq == next => {
                    apply(seq, writes)?;
                    next += 1;
                    at += used;
                }
                Ok((seq, _, _)) => {
                    break format!("record {seq} at byte {at} where {next} was expected")
                }
                Err(why) => break format!("{why} at byte {at}"),
            }
        };
        tracing::debug!(segment = %path.display(), through = next - 1, end = %end, "write-ahead log segment read");
        previous = Some((next, end));
    }
    Ok(())
}

/// One record at the start of `data`: its seq, changes and length in bytes.
fn read_record(data: &[u8]) -> Result<(u64, Writes, usize), String> {
    if data.len() < 8 {
        return Err(format!("record header cut short ({} bytes)", data.len()));
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if len == 0 {
        return Err("an empty record (zeros: unwritten space)".into());
    }
    if len > MAX_RECORD || data.len() - 8 < len as usize {
        return Err(format!(
            "record of {len} bytes, {} left in the segment",
            data.len() - 8
        ));
    }
    let payload = &data[8..8 + len as usize];
    if crc32fast::hash(payload) != crc {
        return Err("record checksum does not match".into());
    }
    let (seq, writes) = Writes::decode(payload)?;
    Ok((seq, writes, 8 + len as usize))
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(n: u8) -> Writes {
        let mut w = Writes::default();
        w.trees[0].insert(IVec::from(&[n][..]), Some(IVec::from(vec![n; 300])));
        w.trees[8].insert(IVec::from(&b"head"[..]), Some(IVec::from(&[n][..])));
        w.trees[12].insert(IVec::from(&[n, n][..]), None);
        w
    }

    fn read_all(dir: &Path) -> Result<Vec<(u64, Writes)>, StoreError> {
        let mut out = Vec::new();
        replay(dir, |seq, w| {
            out.push((seq, w));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn records_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        wal.append(1, &writes(1)).unwrap();
        wal.len = SEGMENT_BYTES;
        let rolled = wal.append(2, &writes(2)).unwrap();
        assert_eq!(rolled.map(|r| r.first), Some(2));
        wal.append(3, &writes(3)).unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 2);

        let read = read_all(dir.path()).unwrap();
        let seqs: Vec<u64> = read.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let (_, third) = &read[2];
        assert_eq!(third.trees[0][&[3u8][..]], Some(IVec::from(vec![3; 300])));
        assert_eq!(third.trees[12][&[3u8, 3][..]], None);

        retire_before(dir.path(), 2, false, &Room::default()).unwrap();
        let seqs: Vec<u64> = read_all(dir.path()).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(seqs, [2, 3]);
    }

    #[test]
    fn body_log_changes_read_back_with_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        let at = |segment, offset| BodyRef {
            segment,
            offset,
            len: 5,
            crc: 0x0102_0304,
        };
        let mut w = writes(1);
        w.bodies.push((at(1, 4096), IVec::from(&b"body1"[..])));
        w.bodies.push((at(2, 8192), IVec::from(&b"body2"[..])));
        w.erased.push(at(1, 12288));
        wal.append(1, &w).unwrap();
        let read = read_all(dir.path()).unwrap();
        let (_, back) = &read[0];
        assert_eq!(back.bodies, w.bodies);
        assert_eq!(back.erased, w.erased);
        assert_eq!(back.trees[0], w.trees[0]);

        // A body change whose kind does not match is refused, naming it.
        let mut payload = 7u64.to_be_bytes().to_vec();
        payload.push(BODY_WRITE);
        put_bytes(&mut payload, &at(1, 4096).encode());
        payload.push(0);
        let err = Writes::decode(&payload).err().expect("refused");
        assert!(err.contains("body change 128 has kind 0"), "{err}");
    }

    #[test]
    fn a_commit_too_large_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        wal.append(1, &writes(1)).unwrap();
        wal.max_record = 100;
        let err = wal.append(2, &writes(2)).err().expect("refused");
        assert!(
            matches!(err, StoreError::CommitTooLarge { max: 100, .. }),
            "{err}"
        );
        wal.max_record = MAX_RECORD as usize;
        wal.append(2, &writes(2)).unwrap();
        let seqs: Vec<u64> = read_all(dir.path()).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(seqs, [1, 2]);
    }

    /// With sync on, the filler writes a new segment with zeros ahead of the records (the
    /// log waits rather than write into a chunk being filled) and every record reads back.
    #[test]
    fn the_filler_keeps_ahead_of_the_records_and_they_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let room = Arc::new(Room::default());
        let filler = {
            let room = Arc::clone(&room);
            std::thread::spawn(move || room.run_filler())
        };
        let mut wal = Wal::start(dir.path(), 1, true, Arc::clone(&room)).unwrap();
        let big = |n: u8| {
            let mut w = Writes::default();
            w.trees[1].insert(IVec::from(&[n][..]), Some(IVec::from(vec![n; 64 << 10])));
            w
        };
        for seq in 1..=100u64 {
            wal.append(seq, &big(seq as u8)).unwrap();
        }
        while room.lock().filling.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let filled = room.lock().filled;
        assert!(
            filled > wal.len + FILL_AHEAD,
            "filled through {filled}, written through {}",
            wal.len
        );
        let on_disk = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len();
        assert!(on_disk >= filled, "{on_disk} < {filled}");
        // Written, not merely a longer file: no hole before `filled`, and zeros after the
        // last record.
        let file = File::open(segment_path(dir.path(), 1)).unwrap();
        let hole = nix::unistd::lseek(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
            nix::unistd::Whence::SeekHole,
        )
        .unwrap() as u64;
        assert!(hole >= filled, "a hole at {hole}, filled through {filled}");
        let mut tail = vec![1u8; (filled - wal.len) as usize];
        file.read_exact_at(&mut tail, wal.len).unwrap();
        assert!(
            tail.iter().all(|&b| b == 0),
            "the filled region holds more than zeros"
        );
        let read = read_all(dir.path()).unwrap();
        assert_eq!(read.len(), 100);
        for (seq, w) in &read {
            let n = *seq as u8;
            assert_eq!(w.trees[1][&[n][..]], Some(IVec::from(vec![n; 64 << 10])));
        }
        room.stop();
        filler.join().unwrap();
    }

    /// Each append writes whole blocks: the record, the bytes of the block it starts in
    /// written again before it, zeros after it. Records that share a block, and ones that
    /// span several, all read back, and the zeros end the log.
    #[test]
    fn appends_write_whole_blocks_and_keep_the_records_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        let path = segment_path(dir.path(), 1);
        let sizes = [10usize, 3000, 1, 4096, 4000, 9000, 96, 8180, 0, 700];
        for (i, size) in sizes.iter().enumerate() {
            let seq = i as u64 + 1;
            let mut w = Writes::default();
            w.trees[0].insert(
                IVec::from(&[i as u8][..]),
                Some(IVec::from(vec![i as u8; *size])),
            );
            wal.append(seq, &w).unwrap();
            let data = std::fs::read(&path).unwrap();
            assert_eq!(data.len() as u64 % BLOCK, 0, "record {seq}: whole blocks");
            assert!(
                data[wal.len as usize..].iter().all(|b| *b == 0),
                "record {seq}: zeros after"
            );
            let read = read_all(dir.path()).unwrap();
            assert_eq!(read.len() as u64, seq);
            for (j, (_, w)) in read.iter().enumerate() {
                assert_eq!(
                    w.trees[0][&[j as u8][..]],
                    Some(IVec::from(vec![j as u8; sizes[j]]))
                );
            }
        }
    }

    #[test]
    fn a_torn_last_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        wal.append(1, &writes(1)).unwrap();
        wal.append(2, &writes(2)).unwrap();
        let path = segment_path(dir.path(), 1);
        // The file goes on to a block boundary, in zeros.
        assert_eq!(std::fs::metadata(&path).unwrap().len() % BLOCK, 0);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(wal.len - 5).unwrap();
        let seqs: Vec<u64> = read_all(dir.path()).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(seqs, [1]);
    }

    #[test]
    fn a_damaged_record_before_the_last_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        wal.append(1, &writes(1)).unwrap();
        let last = wal.len as usize - 1;
        wal.len = SEGMENT_BYTES;
        wal.append(2, &writes(2)).unwrap();
        let path = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&path).unwrap();
        data[last] ^= 0xff;
        std::fs::write(&path, data).unwrap();
        let err = read_all(dir.path()).err().expect("refused");
        assert!(
            err.to_string().contains("checksum"),
            "names the rule broken: {err}"
        );
    }

    #[test]
    fn a_gap_between_segments_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        wal.append(1, &writes(1)).unwrap();
        wal.len = SEGMENT_BYTES;
        wal.append(3, &writes(3)).unwrap();
        let err = read_all(dir.path()).err().expect("refused");
        assert!(
            err.to_string()
                .contains("starts at record 3 where 2 was expected"),
            "{err}"
        );
    }

    /// A recycled segment still holds its old records: they end the new ones, they are
    /// never read as the log.
    #[test]
    fn a_recycled_segment_yields_only_its_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1, false, Arc::default()).unwrap();
        for seq in 1..=3 {
            wal.append(seq, &writes(seq as u8)).unwrap();
        }
        wal.len = SEGMENT_BYTES;
        wal.append(4, &writes(4)).unwrap();
        retire_before(dir.path(), 4, true, &Room::default()).unwrap();
        assert!(
            dir.path().join(SPARE).exists(),
            "segment 1 became the spare"
        );
        let old_len = std::fs::metadata(dir.path().join(SPARE)).unwrap().len();

        wal.len = SEGMENT_BYTES;
        wal.append(5, &writes(5)).unwrap();
        assert!(
            !dir.path().join(SPARE).exists(),
            "the spare became segment 5"
        );
        let reused = std::fs::metadata(segment_path(dir.path(), 5))
            .unwrap()
            .len();
        assert_eq!(reused, old_len, "written over, not truncated");

        let seqs: Vec<u64> = read_all(dir.path()).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(seqs, [4, 5]);
    }

    /// A crash can leave an appended segment longer than what reached the disk, its tail
    /// read back as zeros: that ends the log.
    #[test]
    fn a_tail_of_zeros_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 7, false, Arc::default()).unwrap();
        wal.append(7, &writes(7)).unwrap();
        let path = segment_path(dir.path(), 7);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len + 4096)
            .unwrap();
        let seqs: Vec<u64> = read_all(dir.path()).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(seqs, [7]);
        // The next commit is written where the log ended, over the zeros.
        wal.append(8, &writes(8)).unwrap();
        let seqs: Vec<u64> = read_all(dir.path()).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(seqs, [7, 8]);
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let err = read_all(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("not a segment"), "{err}");
    }
}
