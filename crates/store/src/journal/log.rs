//! The journal log: the journal's entries in append-only files of their own, not in sled
//! (issue 7).
//!
//! The journal is only ever appended to, and read in order (verify, search, export) or at
//! one entry (a checkpoint's). A B-tree buys it nothing: in sled each entry cost an insert of
//! ~550 bytes with its share of leaf splits, three entries per record exchanged, and sled's
//! own log wrote the entries again (a fifth of the bytes a record cost the disk,
//! `docs/performance.md`). Here an entry is written once, to `<dir>/journal/`.
//!
//! What makes an entry durable is the store's write-ahead log, as for the body log
//! (`bodies.rs`): a commit's log record carries its entries (tree `journal`, keyed by seq, as
//! before); the journal files are written after the record, never synced on a commit's path,
//! and fdatasync'ed before a checkpoint retires the log segments that hold the same entries.
//! So any entry the files lack, or hold from a commit whose log record was lost (never
//! acknowledged), is settled by the write-ahead log and the journal head at the next open:
//! while [`Log::recovering`], the first entry put cuts the files after the entry before it
//! and the log's entries are written again; [`Log::finish`] then cuts whatever follows the
//! journal head and requires the files to end exactly there.
//!
//! Readers see whole commits: [`Trees::apply`](crate::Trees) writes a commit's entries under
//! the store's visibility lock, and an [`Entries`] iterator reads up to the end it found
//! when it was made.
//!
//! Format (lengths little-endian, seqs big-endian, as in the write-ahead log): a file
//! `{first seq:020}.journal` starts with [`MAGIC`]; each entry is `len: u32 ‖ crc32: u32 ‖
//! seq: u64 ‖ value`, `len` counting seq and value, the CRC covering both; `value` is the
//! entry as sled held it (`journal.rs`: `0x01 ‖ hash ‖ canonical bytes`, or an older store's
//! ciborium map). Seqs follow each other within a file and from one file to the next. A
//! file grows to [`SEGMENT_BYTES`], then the next entry starts another.
//!
//! Pruning ([`Log::prune`]) copies the file holding the new first entry from that entry on
//! to `{first:020}.journal.tmp`, syncs it, renames it into place and deletes every file
//! before it; a crash in between leaves a `.tmp` (deleted at open: the old file is whole)
//! or old files before the new one (deleted at open: [`Log::finish`] prunes again to the
//! anchor it is given).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sled::IVec;

use crate::wal::{io, sync_dir};
use crate::{codec, StoreError};

/// First bytes of every journal file.
const MAGIC: &[u8; 8] = b"PONSJNL1";

/// Where the first entry of a file starts.
const HEADER: u64 = MAGIC.len() as u64;

/// The bytes before an entry's value: length, CRC and seq.
const ENTRY_HEAD: usize = 16;

/// Size past which the next entry starts a new file: ~30,000 entries of ~550 bytes.
pub(crate) const SEGMENT_BYTES: u64 = 16 << 20;

/// Every this many entries of a file, the place of one is kept in memory (the file's sparse
/// index, made on first need), so that reading from a given seq reads at most this many
/// entries before it.
const INDEX_EVERY: u64 = 256;

/// The largest entry value (a journal entry is ~550 bytes; its texts are bounded upstream).
const MAX_VALUE: u32 = 16 << 20;

/// The journal's entries, in files of their own (see the module documentation).
pub(crate) struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<State>,
}

struct State {
    /// The files, by first seq; the last one is appended to.
    segments: Vec<Segment>,
    /// The seq the next entry must have.
    next: u64,
    /// `Some` until [`Log::finish`]: whether an entry was put since the store opened.
    recovering: Option<bool>,
    /// The last file, open for writing (opened on first need).
    active: Option<Arc<File>>,
    /// Where and why the last file's entries stopped before its end when it was opened (a
    /// torn write, or damage): named if the journal head is beyond them.
    stopped: Option<String>,
    /// Files written since the last sync (the last one is added at each write).
    unsynced: Vec<Arc<File>>,
    /// Whether a file was made or removed since the last sync.
    dir_changed: bool,
}

#[derive(Clone)]
struct Segment {
    /// The seq of its first entry (its name).
    first: u64,
    /// Where its entries end: the file's length for a finished file (checked as it is
    /// read), the end of its last whole entry for the last file.
    end: u64,
    /// Every [`INDEX_EVERY`]-th entry's (seq, offset), made on first need; points may be
    /// missing (made while the file grew), never wrong.
    index: Option<Index>,
}

/// A file's sparse index: (seq, offset) of every [`INDEX_EVERY`]-th entry.
type Index = Arc<Vec<(u64, u64)>>;

/// One entry read from a file.
struct Read1 {
    seq: u64,
    value: Vec<u8>,
    /// Its length in the file, head included.
    len: u64,
}

/// The reading of a file's entries one after the other, from an offset up to an end.
struct Cursor {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    end: u64,
}

impl Cursor {
    fn open(path: &Path, offset: u64, end: u64) -> Result<Cursor, StoreError> {
        let mut file = File::open(path).map_err(io(path))?;
        file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
        Ok(Cursor {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(256 << 10, file),
            offset,
            end,
        })
    }

    /// The next entry; `Ok(None)` at the end; `Err(why)` for bytes that are not a whole,
    /// intact entry (an I/O error is returned as an error of its own).
    fn next(&mut self) -> Result<Option<Result<Read1, String>>, StoreError> {
        if self.offset >= self.end {
            return Ok(None);
        }
        let left = self.end - self.offset;
        if left < ENTRY_HEAD as u64 {
            return Ok(Some(Err(format!("an entry head cut short ({left} bytes)"))));
        }
        let mut head = [0u8; ENTRY_HEAD];
        self.reader.read_exact(&mut head).map_err(io(&self.path))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&head[8..16]);
        if len < 8 || len - 8 > MAX_VALUE {
            return Ok(Some(Err(format!("an entry of {len} bytes"))));
        }
        if u64::from(len) + 8 > left {
            return Ok(Some(Err(format!(
                "an entry of {len} bytes with {} left",
                left - 8
            ))));
        }
        let mut value = vec![0u8; len as usize - 8];
        self.reader.read_exact(&mut value).map_err(io(&self.path))?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq);
        hasher.update(&value);
        if hasher.finalize() != crc {
            return Ok(Some(Err("an entry whose checksum does not match".into())));
        }
        let read = Read1 {
            seq: u64::from_be_bytes(seq),
            value,
            len: u64::from(len) + 8,
        };
        self.offset += read.len;
        Ok(Some(Ok(read)))
    }
}

/// What a walk through a file found: where its whole, consecutive entries end, the seq after
/// the last of them, and why it stopped before the end given (`None`: it reached it).
struct Walk {
    end: u64,
    next: u64,
    stopped: Option<String>,
}

/// Reads the entries of file `path`, named for `first`, from its start to `end` (or the
/// first entry that is not whole, intact or next in sequence), calling `each(seq, offset)`
/// with each entry read and where it starts; the walk stops after an entry `each` answers
/// `false` to.
fn walk(
    path: &Path,
    first: u64,
    end: u64,
    mut each: impl FnMut(u64, u64) -> bool,
) -> Result<Walk, StoreError> {
    let mut cursor = Cursor::open(path, HEADER, end)?;
    let mut next = first;
    loop {
        let at = cursor.offset;
        let stopped = match cursor.next()? {
            None => None,
            Some(Ok(read)) if read.seq == next => {
                next += 1;
                if each(read.seq, at) {
                    continue;
                }
                // Told to stop: the entry just read ends the walk.
                return Ok(Walk {
                    end: cursor.offset,
                    next,
                    stopped: None,
                });
            }
            Some(Ok(read)) => Some(format!("entry {} where {next} was expected", read.seq)),
            Some(Err(why)) => Some(why),
        };
        return Ok(Walk {
            end: at,
            next,
            stopped: stopped.map(|why| format!("{why} at byte {at}")),
        });
    }
}

/// The sparse index of file `seg` (at `path`): every [`INDEX_EVERY`]-th entry's seq and
/// offset.
fn build_index(path: &Path, seg: &Segment) -> Result<Vec<(u64, u64)>, StoreError> {
    let mut points = Vec::new();
    walk(path, seg.first, seg.end, |s, at| {
        if (s - seg.first).is_multiple_of(INDEX_EVERY) {
            points.push((s, at));
        }
        true
    })?;
    Ok(points)
}

/// The offset in the file at `path` (first entry `first`, entries up to `end`) of entry `seq`, from the file's sparse index,
/// then read forward; for a seq before the file's first, its first entry's. Where the entry
/// is not found, the offset where reading stopped: the reader reports what it finds there.
fn seek(
    path: &Path,
    first: u64,
    end: u64,
    index: &[(u64, u64)],
    seq: u64,
) -> Result<u64, StoreError> {
    if seq <= first {
        return Ok(HEADER);
    }
    let (mut at_seq, mut at) = index
        .get(index.partition_point(|&(s, _)| s <= seq).saturating_sub(1))
        .copied()
        .filter(|&(s, _)| s <= seq)
        .unwrap_or((first, HEADER));
    let mut cursor = Cursor::open(path, at, end)?;
    while at_seq < seq {
        match cursor.next()? {
            Some(Ok(read)) if read.seq == at_seq => {
                at += read.len;
                at_seq += 1;
            }
            _ => break,
        }
    }
    Ok(at)
}

fn corrupt(path: &Path, reason: String) -> StoreError {
    StoreError::JournalFile {
        path: path.display().to_string(),
        reason,
    }
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.journal")
}

/// The encoded form of one entry (see the module documentation), appended to `out`.
fn encode(out: &mut Vec<u8>, seq: u64, value: &[u8]) {
    let seq = seq.to_be_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq);
    hasher.update(value);
    let len = u32::try_from(value.len() + 8).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&seq);
    out.extend_from_slice(value);
}

impl Log {
    /// Opens the journal files in `dir` (made if missing), recovering: entries are then put
    /// as the write-ahead log is replayed, and [`Log::finish`] ends the recovery.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> Result<Log, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut firsts = Vec::new();
        let mut tmps = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(first) = name
                .strip_suffix(".journal.tmp")
                .and_then(|n| n.parse::<u64>().ok())
            {
                tmps.push((first, path));
                continue;
            }
            match name
                .strip_suffix(".journal")
                .and_then(|n| n.parse::<u64>().ok())
            {
                Some(first) => firsts.push(first),
                None => {
                    return Err(StoreError::JournalFile {
                        path: path.display().to_string(),
                        reason: "not a journal file (expected <first seq>.journal)".into(),
                    })
                }
            }
        }
        firsts.sort_unstable();
        for (first, tmp) in tmps {
            // A pruning's copy (see `Log::prune`): it was synced before any file was
            // deleted, and the file it was copied from is deleted only once every file
            // before it is. So while a file holds its first entry's place the copy is not
            // needed (the pruning is done again, `finish`); once none does, it is the only
            // copy of its entries.
            if firsts.first().is_some_and(|&f| f <= first) {
                std::fs::remove_file(&tmp).map_err(io(&tmp))?;
            } else {
                let path = dir.join(segment_name(first));
                std::fs::rename(&tmp, &path).map_err(io(&tmp))?;
                sync_dir(dir)?;
                tracing::info!(file = %path.display(), "journal pruning finished at open");
                firsts.insert(0, first);
            }
        }
        let mut segments = Vec::with_capacity(firsts.len());
        for (i, &first) in firsts.iter().enumerate() {
            let path = dir.join(segment_name(first));
            let len = std::fs::metadata(&path).map_err(io(&path))?.len();
            let mut magic = [0u8; HEADER as usize];
            let whole = len >= HEADER
                && File::open(&path)
                    .and_then(|f| f.read_exact_at(&mut magic, 0))
                    .is_ok();
            if whole && &magic != MAGIC {
                return Err(StoreError::JournalFile {
                    path: path.display().to_string(),
                    reason: "not a Pons journal file".into(),
                });
            }
            if !whole && i + 1 < firsts.len() {
                return Err(StoreError::JournalFile {
                    path: path.display().to_string(),
                    reason: format!("{len} bytes, not even its header, before later files"),
                });
            }
            segments.push(Segment {
                first,
                end: len.max(HEADER),
                index: None,
            });
        }
        let mut stopped = None;
        let next = match segments.last_mut() {
            None => 1,
            Some(last) => {
                let path = dir.join(segment_name(last.first));
                if std::fs::metadata(&path).map_err(io(&path))?.len() < HEADER {
                    // Made, then cut short by a crash before its header was on disk.
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io(&path))?;
                    file.set_len(0).map_err(io(&path))?;
                    file.write_all_at(MAGIC, 0).map_err(io(&path))?;
                    last.end = HEADER;
                }
                let walk = walk(&path, last.first, last.end, |_, _| true)?;
                if let Some(why) = walk.stopped {
                    tracing::info!(file = %path.display(), %why, "journal file ends before its last bytes; the write-ahead log and the journal head settle the rest");
                    stopped = Some(format!("{}: {why}", path.display()));
                }
                last.end = walk.end;
                walk.next
            }
        };
        Ok(Log {
            dir: dir.to_path_buf(),
            segment_bytes,
            state: Mutex::new(State {
                segments,
                next,
                recovering: Some(false),
                stopped,
                active: None,
                unsynced: Vec::new(),
                dir_changed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, first: u64) -> PathBuf {
        self.dir.join(segment_name(first))
    }

    /// The seq of the last entry (the first one's minus one if there is none).
    pub(crate) fn last(&self) -> u64 {
        self.lock().next - 1
    }

    /// The seq of the first entry held (the next one's if there is none).
    fn first(state: &State) -> u64 {
        state.segments.first().map_or(state.next, |s| s.first)
    }

    /// Writes one commit's journal entries (the journal tree's changes: seq → stored
    /// entry), in order, after the last one. While recovering, entries before the first one
    /// held are skipped (pruned), and the first entry put first cuts the files after the entry
    /// before it (see the module documentation). The caller holds the store's visibility
    /// lock, so readers see all of a commit's entries or none.
    pub(crate) fn put_all(&self, changes: &BTreeMap<IVec, Option<IVec>>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let mut buf = Vec::new();
        for (key, value) in changes {
            let seq = codec::be_u64("journal key", key)?;
            if seq == 0 {
                return Err(StoreError::Corrupt {
                    what: "journal entry",
                    key: codec::hex(key),
                    reason: "entry 0: entries are numbered from 1".into(),
                });
            }
            let Some(value) = value else {
                return Err(StoreError::Corrupt {
                    what: "journal entry",
                    key: codec::hex(key),
                    reason: "a commit removes it: journal entries are only ever added".into(),
                });
            };
            if let Some(put) = state.recovering {
                if seq < Self::first(&state) {
                    continue;
                }
                if !put {
                    self.cut_after(&mut state, seq - 1)?;
                    state.recovering = Some(true);
                }
            }
            if seq != state.next {
                let file = state
                    .segments
                    .last()
                    .map_or_else(|| self.dir.clone(), |s| self.path(s.first));
                return Err(StoreError::JournalFile {
                    path: file.display().to_string(),
                    reason: format!(
                        "entry {seq} is to follow the last entry, {}",
                        state.next - 1
                    ),
                });
            }
            self.push(&mut state, &mut buf, seq, value)?;
        }
        self.write(&mut state, &buf)
    }

    /// Adds entry `seq` to `buf`, the bytes to write at the end of the last file: first
    /// writes `buf` and starts a new file if there is none, if `seq` does not follow the last
    /// entry (an import's gap), or if the last file is full (a file takes at least one entry,
    /// however large).
    fn push(
        &self,
        state: &mut State,
        buf: &mut Vec<u8>,
        seq: u64,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let len = (ENTRY_HEAD + value.len()) as u64;
        let roll = state.segments.last().is_none_or(|s| {
            seq != state.next
                || (s.end + buf.len() as u64 + len > self.segment_bytes && s.first < seq)
        });
        if roll {
            self.write(state, buf)?;
            buf.clear();
            self.start_segment(state, seq)?;
        }
        let last = state.segments.last_mut().expect("a file was started");
        if (seq - last.first).is_multiple_of(INDEX_EVERY) {
            let offset = last.end + buf.len() as u64;
            if let Some(index) = &mut last.index {
                Arc::make_mut(index).push((seq, offset));
            }
        }
        encode(buf, seq, value);
        state.next = seq + 1;
        Ok(())
    }

    /// Writes `buf` at the end of the last file and moves its end.
    fn write(&self, state: &mut State, buf: &[u8]) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let file = self.active(state)?;
        let last = state
            .segments
            .last_mut()
            .expect("an active file has a segment");
        file.write_all_at(buf, last.end)
            .map_err(io(&self.path(last.first)))?;
        last.end += buf.len() as u64;
        if !state.unsynced.iter().any(|f| Arc::ptr_eq(f, &file)) {
            state.unsynced.push(file);
        }
        Ok(())
    }

    /// The last file, open for writing.
    fn active(&self, state: &mut State) -> Result<Arc<File>, StoreError> {
        if let Some(file) = &state.active {
            return Ok(Arc::clone(file));
        }
        let first = state
            .segments
            .last()
            .map(|s| s.first)
            .ok_or_else(|| StoreError::Task("the journal log has no file to write".into()))?;
        let path = self.path(first);
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?,
        );
        state.active = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Makes a new last file for entries from `first` on (the one before stays to be synced).
    fn start_segment(&self, state: &mut State, first: u64) -> Result<(), StoreError> {
        let path = self.path(first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all_at(MAGIC, 0).map_err(io(&path))?;
        let file = Arc::new(file);
        state.unsynced.push(Arc::clone(&file));
        state.active = Some(file);
        state.dir_changed = true;
        state.segments.push(Segment {
            first,
            end: HEADER,
            index: Some(Arc::default()),
        });
        Ok(())
    }

    /// Cuts the files after entry `seq`: the entries after it are dropped (files after the
    /// one holding it deleted, that one truncated). Refused if entries up to `seq` are
    /// missing.
    fn cut_after(&self, state: &mut State, seq: u64) -> Result<(), StoreError> {
        let next = seq + 1;
        if next == state.next {
            return Ok(());
        }
        if next > state.next {
            return Err(StoreError::JournalFile {
                path: self.dir.display().to_string(),
                reason: format!(
                    "the files end with entry {}, and entries {}..={seq} are in neither the \
                     files nor the write-ahead log",
                    state.next - 1,
                    state.next
                ),
            });
        }
        // The file holding `next`'s place: the last whose first entry is not after it.
        let k = state.segments.partition_point(|s| s.first <= next);
        let (keep, end) = match k.checked_sub(1) {
            // Before every file, or at the first one's start: none is kept.
            None => (0, None),
            Some(0) if state.segments[0].first == next => (0, None),
            // `next` starts a file: the one before must end with `seq`.
            Some(h) if state.segments[h].first == next => {
                let before = &state.segments[h - 1];
                let path = self.path(before.first);
                let walk = walk(&path, before.first, before.end, |_, _| true)?;
                if walk.next != next {
                    return Err(self.missing(&path, &walk, seq));
                }
                (h, Some(walk.end))
            }
            Some(h) => {
                let seg = &state.segments[h];
                let path = self.path(seg.first);
                let walk = walk(&path, seg.first, seg.end, |s, _| s < seq)?;
                if walk.next != next {
                    return Err(self.missing(&path, &walk, seq));
                }
                (h + 1, Some(walk.end))
            }
        };
        for seg in state.segments.drain(keep..) {
            let path = self.path(seg.first);
            std::fs::remove_file(&path).map_err(io(&path))?;
            state.dir_changed = true;
        }
        state.active = None;
        if let (Some(end), Some(last)) = (end, state.segments.last_mut()) {
            let path = self.path(last.first);
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            file.set_len(end).map_err(io(&path))?;
            last.end = end;
            if let Some(index) = &mut last.index {
                Arc::make_mut(index).retain(|&(s, _)| s <= seq);
            }
            state.unsynced.push(Arc::new(file));
        }
        tracing::info!(
            after = seq,
            dropped_from = next,
            through = state.next - 1,
            "journal files cut"
        );
        state.stopped = None;
        state.next = next;
        Ok(())
    }

    fn missing(&self, path: &Path, walk: &Walk, seq: u64) -> StoreError {
        StoreError::JournalFile {
            path: path.display().to_string(),
            reason: format!(
                "its entries end with {} ({}), and entry {seq} is not in the write-ahead log",
                walk.next - 1,
                walk.stopped.as_deref().unwrap_or("its end")
            ),
        }
    }

    /// Ends the recovery: with no entry put from the write-ahead log, cuts the entries after
    /// the journal head `head` (a commit whose log record was lost wrote them); the files
    /// must then end exactly at it. Entries before `anchor` (a pruning's anchor, 1 if the
    /// journal was never pruned) are pruned again if a crash left them.
    pub(crate) fn finish(&self, head: u64, anchor: u64) -> Result<(), StoreError> {
        {
            let mut state = self.lock();
            if state.recovering.take() == Some(false)
                && state.next > head + 1
                && head + 1 >= Self::first(&state)
            {
                self.cut_after(&mut state, head)?;
            }
            if state.next <= head {
                if let Some(why) = &state.stopped {
                    return Err(StoreError::JournalFile {
                        path: self.dir.display().to_string(),
                        reason: format!(
                            "the files' entries end with {}, the journal head is entry {head} \
                             ({why})",
                            state.next - 1
                        ),
                    });
                }
            }
            if state.next != head + 1 {
                return Err(StoreError::HeadMismatch {
                    head_seq: head,
                    last_seq: state.next - 1,
                });
            }
            // What follows the last whole entry (a torn write) is cut now, so that no later
            // walk can take its bytes for entries.
            if let Some(last) = state.segments.last() {
                let path = self.path(last.first);
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                if file.metadata().map_err(io(&path))?.len() > last.end {
                    file.set_len(last.end).map_err(io(&path))?;
                    state.unsynced.push(Arc::new(file));
                }
            }
        }
        if anchor > 1 && self.first_held() < anchor && anchor <= head {
            if let Err(e) = self.prune(anchor) {
                // Verification reports what is wrong with the anchor; the node still starts.
                tracing::warn!(anchor, error = %e, "journal entries before the anchor could not be pruned again");
            }
        }
        Ok(())
    }

    fn first_held(&self) -> u64 {
        Self::first(&self.lock())
    }

    /// Appends entries read from an older store's sled tree (seq, stored value), in order,
    /// to an empty log, then syncs. A gap starts a new file: verification reports it.
    pub(crate) fn import(
        &self,
        entries: impl Iterator<Item = Result<(u64, IVec), StoreError>>,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        {
            let mut state = self.lock();
            if !state.segments.is_empty() {
                return Err(StoreError::Task(
                    "the journal log must be empty to import entries".into(),
                ));
            }
            let mut buf = Vec::new();
            for item in entries {
                let (seq, value) = item?;
                self.push(&mut state, &mut buf, seq, &value)?;
                n += 1;
            }
            self.write(&mut state, &buf)?;
        }
        self.sync()?;
        Ok(n)
    }

    /// fdatasyncs every file and the directory (after an import, which an earlier open may
    /// have written without syncing).
    pub(crate) fn sync_files(&self) -> Result<(), StoreError> {
        let firsts: Vec<u64> = self.lock().segments.iter().map(|s| s.first).collect();
        for first in firsts {
            let path = self.path(first);
            File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(io(&path))?;
        }
        sync_dir(&self.dir)
    }

    /// Deletes every file (an import cut short by a crash, done again).
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        for seg in state.segments.drain(..) {
            let path = self.path(seg.first);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        state.active = None;
        state.unsynced.clear();
        state.next = 1;
        drop(state);
        sync_dir(&self.dir)
    }

    /// fdatasyncs every file written since the last sync (and the directory if a file was
    /// made or removed): before a checkpoint retires the write-ahead log segments holding the
    /// same entries.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let (files, dir_changed) = {
            let mut state = self.lock();
            (
                std::mem::take(&mut state.unsynced),
                std::mem::take(&mut state.dir_changed),
            )
        };
        let done = (|| {
            for file in &files {
                file.sync_data().map_err(io(&self.dir))?;
            }
            if dir_changed {
                sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if done.is_err() {
            // Synced again next time.
            let mut state = self.lock();
            state.unsynced.extend(files);
            state.dir_changed |= dir_changed;
        }
        done
    }

    /// Removes the entries before `anchor` (an entry held): the file holding it is copied
    /// from it on (`.tmp`, synced), the files before it are deleted, then that file, and the
    /// copy is renamed into its place (so that at every step either a file or the synced
    /// copy holds the entries kept: `Log::open`). The caller holds the store's write lock
    /// (nothing is appended meanwhile). Returns how many entries were removed.
    pub(crate) fn prune(&self, anchor: u64) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let first = Self::first(&state);
        if anchor <= first {
            return Ok(0);
        }
        if anchor >= state.next {
            return Err(StoreError::Task(format!(
                "journal pruning to entry {anchor}, after the last one ({})",
                state.next - 1
            )));
        }
        let k = state.segments.partition_point(|s| s.first <= anchor) - 1;
        let seg = state.segments[k].clone();
        let mut copy = None;
        if seg.first < anchor {
            let old = self.path(seg.first);
            let index = match &seg.index {
                Some(index) => Arc::clone(index),
                None => Arc::new(build_index(&old, &seg)?),
            };
            let from = seek(&old, seg.first, seg.end, &index, anchor)?;
            let tmp = self.dir.join(format!("{}.tmp", segment_name(anchor)));
            let written = (|| -> std::io::Result<()> {
                let src = File::open(&old)?;
                let dst = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)?;
                dst.write_all_at(MAGIC, 0)?;
                let mut buf = vec![0u8; 1 << 20];
                let (mut from_at, mut to_at) = (from, HEADER);
                while from_at < seg.end {
                    let n = buf.len().min((seg.end - from_at) as usize);
                    src.read_exact_at(&mut buf[..n], from_at)?;
                    dst.write_all_at(&buf[..n], to_at)?;
                    from_at += n as u64;
                    to_at += n as u64;
                }
                dst.sync_all()
            })();
            written.map_err(io(&tmp))?;
            copy = Some((tmp, from));
        }
        let removed: Vec<Segment> = state.segments.drain(..k).collect();
        for seg in &removed {
            let path = self.path(seg.first);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        if let Some((tmp, from)) = copy {
            let old = self.path(seg.first);
            std::fs::remove_file(&old).map_err(io(&old))?;
            let new = self.path(anchor);
            std::fs::rename(&tmp, &new).map_err(io(&tmp))?;
            if state.segments.len() == 1 {
                state.active = None;
            }
            state.segments[0] = Segment {
                first: anchor,
                end: HEADER + (seg.end - from),
                index: None,
            };
        }
        // The files removed must not come back: written, they need no sync any more.
        state.unsynced.clear();
        if let Some(active) = state.active.clone() {
            state.unsynced.push(active);
        }
        sync_dir(&self.dir)?;
        tracing::info!(removed = anchor - first, first = anchor, "journal pruned");
        Ok(anchor - first)
    }

    /// The sparse index of the file whose first entry is `first`, made by reading the file
    /// if it has none yet, without the lock (committers append meanwhile: the index only
    /// misses the entries they add). `None` if there is no such file any more.
    fn index(&self, first: u64) -> Result<Option<Index>, StoreError> {
        let seg = match self.lock().segments.iter().find(|s| s.first == first) {
            None => return Ok(None),
            Some(seg) => seg.clone(),
        };
        if let Some(index) = seg.index {
            return Ok(Some(index));
        }
        let index = Arc::new(build_index(&self.path(first), &seg)?);
        if let Some(now) = self.lock().segments.iter_mut().find(|s| s.first == first) {
            now.index.get_or_insert_with(|| Arc::clone(&index));
        }
        Ok(Some(index))
    }

    /// The entries from `from` on (from the first held, if `from` is before it), up to the
    /// last one written when this is called.
    pub(crate) fn entries(self: &Arc<Log>, from: u64) -> Entries {
        let state = self.lock();
        Entries {
            log: Arc::clone(self),
            segments: state.segments.iter().map(|s| (s.first, s.end)).collect(),
            from: from.max(Self::first(&state)),
            last: state.next - 1,
            cursor: None,
            expected: 0,
            done: false,
        }
    }
}

/// The journal's entries, in order, as (seq, stored value): see [`Log::entries`].
pub(crate) struct Entries {
    log: Arc<Log>,
    /// The files (first seq, end) as they were when the iterator was made.
    segments: Vec<(u64, u64)>,
    from: u64,
    last: u64,
    /// The file being read: its place in `segments`, and where in it.
    cursor: Option<(usize, Cursor)>,
    /// The seq the next entry read must have.
    expected: u64,
    done: bool,
}

impl Entries {
    fn step(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        loop {
            if self.expected > self.last && self.cursor.is_some() {
                return Ok(None);
            }
            let Some((i, cursor)) = &mut self.cursor else {
                // The first read: the file holding `from`, at its place.
                if self.from > self.last || self.segments.is_empty() {
                    return Ok(None);
                }
                let k = self
                    .segments
                    .partition_point(|&(first, _)| first <= self.from)
                    .saturating_sub(1);
                let (first, end) = self.segments[k];
                let at = if self.from <= first {
                    HEADER
                } else {
                    let Some(index) = self.log.index(first)? else {
                        return Err(self.pruned(first));
                    };
                    seek(&self.log.path(first), first, end, &index, self.from)?
                };
                self.cursor = Some((k, self.open(first, at, end)?));
                self.expected = self.from.max(first);
                continue;
            };
            let at = cursor.offset;
            match cursor.next()? {
                Some(Ok(read)) if read.seq < self.expected => {
                    // Before `from` in its file: read past.
                    continue;
                }
                Some(Ok(read)) if read.seq == self.expected => {
                    self.expected += 1;
                    return Ok(Some((read.seq, read.value)));
                }
                Some(Ok(read)) => {
                    return Err(corrupt(
                        &cursor.path,
                        format!(
                            "entry {} at byte {at} where {} was expected",
                            read.seq, self.expected
                        ),
                    ))
                }
                Some(Err(why)) => return Err(corrupt(&cursor.path, format!("{why} at byte {at}"))),
                None => {
                    // The end of a file: the next one must start with the next entry.
                    let i = *i + 1;
                    let Some(&(first, end)) = self.segments.get(i) else {
                        return Err(corrupt(
                            &cursor.path,
                            format!(
                                "it ends before entry {}, the last one being {}",
                                self.expected, self.last
                            ),
                        ));
                    };
                    if first != self.expected {
                        let path = self.log.path(first);
                        return Err(corrupt(
                            &path,
                            format!(
                                "it starts at entry {first} where {} was expected",
                                self.expected
                            ),
                        ));
                    }
                    self.cursor = Some((i, self.open(first, HEADER, end)?));
                }
            }
        }
    }

    fn open(&self, first: u64, at: u64, end: u64) -> Result<Cursor, StoreError> {
        let path = self.log.path(first);
        match Cursor::open(&path, at, end) {
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(self.pruned(first))
            }
            other => other,
        }
    }

    fn pruned(&self, first: u64) -> StoreError {
        StoreError::JournalFile {
            path: self.log.path(first).display().to_string(),
            reason: "pruned while it was read".into(),
        }
    }
}

impl Iterator for Entries {
    type Item = Result<(u64, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files this small hold a handful of entries each, so that tests cross many.
    const SMALL: u64 = 200;

    fn value(seq: u64, tag: &str) -> IVec {
        IVec::from(format!("entry {seq} {tag}").into_bytes())
    }

    fn changes(seqs: std::ops::RangeInclusive<u64>, tag: &str) -> BTreeMap<IVec, Option<IVec>> {
        seqs.map(|s| (IVec::from(&s.to_be_bytes()[..]), Some(value(s, tag))))
            .collect()
    }

    /// A log in `dir` recovered with nothing to replay and head `head`.
    fn opened(dir: &Path, head: u64) -> Log {
        let log = Log::open(dir, SMALL).expect("open");
        log.finish(head, 1).expect("finish");
        log
    }

    fn read(log: &Arc<Log>, from: u64) -> Vec<(u64, String)> {
        log.entries(from)
            .map(|e| {
                let (seq, v) = e.expect("entry");
                (seq, String::from_utf8(v).expect("utf-8"))
            })
            .collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn entries_are_read_from_any_seq_across_files_and_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(opened(dir.path(), 0));
        for commit in 0..20 {
            log.put_all(&changes(commit * 5 + 1..=commit * 5 + 5, "a"))
                .expect("put");
        }
        assert!(files(dir.path()).len() > 10, "{:?}", files(dir.path()));
        let all = read(&log, 0);
        assert_eq!(all.len(), 100);
        for (i, (seq, v)) in all.iter().enumerate() {
            assert_eq!(
                (*seq, v.as_str()),
                (i as u64 + 1, format!("entry {seq} a").as_str())
            );
        }
        for from in [1, 2, 7, 8, 50, 99, 100] {
            assert_eq!(read(&log, from), all[from as usize - 1..], "from {from}");
        }
        assert!(read(&log, 101).is_empty());
        drop(log);
        let log = Arc::new(opened(dir.path(), 100));
        assert_eq!(read(&log, 0), all);
        assert_eq!(read(&log, 63), all[62..]);
        log.put_all(&changes(101..=101, "b")).expect("goes on");
        assert_eq!(read(&log, 100).len(), 2);
    }

    #[test]
    fn the_sparse_index_finds_entries_in_a_large_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(Log::open(dir.path(), SEGMENT_BYTES).expect("open"));
        log.finish(0, 1).expect("finish");
        log.put_all(&changes(1..=2000, "a")).expect("put");
        for from in [1, 255, 256, 257, 1000, 1999, 2000] {
            assert_eq!(read(&log, from)[0].0, from);
        }
        drop(log);
        // Reopened, the index is made from the file on first need.
        let log = Arc::new(Log::open(dir.path(), SEGMENT_BYTES).expect("open"));
        log.finish(2000, 1).expect("finish");
        for from in [1700, 3, 513] {
            let got = read(&log, from);
            assert_eq!((got[0].0, got.len() as u64), (from, 2001 - from));
        }
    }

    #[test]
    fn a_reader_sees_the_entries_there_when_it_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(opened(dir.path(), 0));
        log.put_all(&changes(1..=10, "a")).expect("put");
        let mut entries = log.entries(0);
        assert_eq!(entries.next().expect("one").expect("ok").0, 1);
        log.put_all(&changes(11..=30, "a")).expect("put");
        assert_eq!(entries.count(), 9);
    }

    #[test]
    fn recovery_writes_the_logs_entries_again_from_its_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = opened(dir.path(), 0);
            log.put_all(&changes(1..=20, "old")).expect("put");
        }
        // The write-ahead log holds entries 9..=24: 9..=20 as the files have them (here
        // marked "wal" to see they were written again), 21..=24 never written.
        let log = Arc::new(Log::open(dir.path(), SMALL).expect("open"));
        log.put_all(&changes(9..=15, "wal")).expect("recover");
        log.put_all(&changes(16..=24, "wal")).expect("recover");
        log.finish(24, 1).expect("finish");
        let all = read(&log, 0);
        assert_eq!(all.len(), 24);
        assert!(all[..8].iter().all(|(_, v)| v.ends_with("old")));
        assert!(all[8..].iter().all(|(_, v)| v.ends_with("wal")));
    }

    #[test]
    fn entries_after_the_head_are_cut_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = opened(dir.path(), 0);
            log.put_all(&changes(1..=40, "a")).expect("put");
        }
        // A commit wrote 31..=40, and its log record was lost: the head says 30.
        let log = Arc::new(opened(dir.path(), 30));
        assert_eq!(log.last(), 30);
        log.put_all(&changes(31..=31, "b")).expect("put");
        let all = read(&log, 0);
        assert_eq!(all.last().expect("last"), &(31, "entry 31 b".to_string()));
        drop(log);
        let log = Arc::new(opened(dir.path(), 31));
        assert_eq!(read(&log, 0), all);
    }

    #[test]
    fn missing_entries_are_refused_and_nothing_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = opened(dir.path(), 0);
            log.put_all(&changes(1..=10, "a")).expect("put");
        }
        let before = files(dir.path());
        // The head says 12: entries 11 and 12 are in neither the files nor the log.
        let err = Log::open(dir.path(), SMALL)
            .expect("open")
            .finish(12, 1)
            .expect_err("refused");
        assert!(
            matches!(
                err,
                StoreError::HeadMismatch {
                    head_seq: 12,
                    last_seq: 10
                }
            ),
            "{err}"
        );
        // The write-ahead log resumes at 13: 11 and 12 are missing.
        let log = Log::open(dir.path(), SMALL).expect("open");
        let err = log.put_all(&changes(13..=14, "wal")).expect_err("gap");
        assert!(err.to_string().contains("entries 11..=12"), "{err}");
        assert_eq!(files(dir.path()), before);
        assert_eq!(log.last(), 10);
    }

    #[test]
    fn a_torn_last_entry_is_cut_and_a_damaged_one_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = opened(dir.path(), 0);
            log.put_all(&changes(1..=30, "a")).expect("put");
        }
        let names = files(dir.path());
        let last = dir.path().join(names.last().expect("a file"));
        let len = std::fs::metadata(&last).expect("meta").len();
        // Half of a new entry's bytes, as a crash mid-write leaves them.
        let mut torn = Vec::new();
        encode(&mut torn, 31, b"entry 31 lost");
        OpenOptions::new()
            .write(true)
            .open(&last)
            .expect("open")
            .write_all_at(&torn[..10], len)
            .expect("write");
        let log = Arc::new(opened(dir.path(), 30));
        assert_eq!(std::fs::metadata(&last).expect("meta").len(), len);
        log.put_all(&changes(31..=31, "b")).expect("put");
        assert_eq!(read(&log, 0).len(), 31);
        drop(log);

        // A byte changed in an earlier file: reading names the file and the byte.
        let first = dir.path().join(&names[0]);
        let mut bytes = std::fs::read(&first).expect("read");
        bytes[HEADER as usize + ENTRY_HEAD + 2] ^= 1;
        std::fs::write(&first, bytes).expect("write");
        let log = Arc::new(opened(dir.path(), 31));
        let err = log
            .entries(0)
            .find_map(Result::err)
            .expect("a damaged entry");
        let text = err.to_string();
        assert!(
            text.contains(&names[0]) && text.contains("checksum") && text.contains("byte 8"),
            "{text}"
        );
    }

    #[test]
    fn pruning_removes_files_and_entries_before_the_anchor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(opened(dir.path(), 0));
        log.put_all(&changes(1..=50, "a")).expect("put");
        let anchor = read(&log, 0)
            .iter()
            .map(|(s, _)| *s)
            .find(|s| {
                // An entry in the middle of a file.
                !files(dir.path()).contains(&segment_name(*s)) && *s > 20
            })
            .expect("an entry inside a file");
        assert_eq!(log.prune(anchor).expect("prune"), anchor - 1);
        assert_eq!(read(&log, 0)[0].0, anchor);
        assert_eq!(files(dir.path())[0], segment_name(anchor));
        // Every byte before the anchor is gone from the directory.
        let needle = format!("entry {} a", anchor - 1);
        for name in files(dir.path()) {
            let bytes = std::fs::read(dir.path().join(&name)).expect("read");
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{name}"
            );
        }
        log.put_all(&changes(51..=51, "b")).expect("appends go on");
        assert_eq!(log.prune(anchor).expect("again"), 0);
        drop(log);
        let log = Arc::new(opened(dir.path(), 51));
        assert_eq!(read(&log, 0).len() as u64, 52 - anchor);
    }

    #[test]
    fn a_pruning_cut_short_is_finished_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = {
            let log = Arc::new(opened(dir.path(), 0));
            log.put_all(&changes(1..=50, "a")).expect("put");
            read(&log, 0)
        };
        let names = files(dir.path());
        let holder = |seq: u64| {
            names
                .iter()
                .rev()
                .find(|n| n[..20].parse::<u64>().expect("first") <= seq)
                .expect("a file")
                .clone()
        };
        let anchor = (20..50)
            .find(|s| !names.contains(&segment_name(*s)))
            .expect("inside a file");
        // The copy made and synced, nothing deleted yet: the copy is dropped, the
        // pruning done again from the anchor the store keeps.
        let copy = |dir: &Path| {
            let src = std::fs::read(dir.join(holder(anchor))).expect("read");
            let mut out = MAGIC.to_vec();
            let mut at = HEADER as usize;
            while at < src.len() {
                let len = u32::from_le_bytes(src[at..at + 4].try_into().expect("4")) as usize + 8;
                let seq = u64::from_be_bytes(src[at + 8..at + 16].try_into().expect("8"));
                if seq >= anchor {
                    out.extend_from_slice(&src[at..at + len]);
                }
                at += len;
            }
            std::fs::write(dir.join(format!("{}.tmp", segment_name(anchor))), out).expect("write");
        };
        copy(dir.path());
        let log = Arc::new(Log::open(dir.path(), SMALL).expect("open"));
        log.finish(50, anchor).expect("finish");
        assert_eq!(read(&log, 0), all[anchor as usize - 1..]);
        assert!(!files(dir.path()).iter().any(|n| n.ends_with(".tmp")));
        drop(log);

        // The files before deleted and the one holding the anchor too, not renamed yet:
        // the copy is the only one, and is put in place.
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = opened(dir.path(), 0);
            log.put_all(&changes(1..=50, "a")).expect("put");
        }
        copy(dir.path());
        for name in &names {
            if name[..20].parse::<u64>().expect("first") <= anchor {
                std::fs::remove_file(dir.path().join(name)).expect("remove");
            }
        }
        let log = Arc::new(Log::open(dir.path(), SMALL).expect("open"));
        log.finish(50, anchor).expect("finish");
        assert_eq!(read(&log, 0), all[anchor as usize - 1..]);
    }

    #[test]
    fn an_import_keeps_gaps_for_verification_to_find() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(Log::open(dir.path(), SMALL).expect("open"));
        let old = (1..=5).chain(7..=9).map(|s| Ok((s, value(s, "sled"))));
        assert_eq!(log.import(old).expect("import"), 8);
        assert_eq!(log.last(), 9);
        let err = log
            .entries(0)
            .find_map(Result::err)
            .expect("the gap is reported");
        assert!(
            err.to_string()
                .contains("starts at entry 7 where 6 was expected"),
            "{err}"
        );
    }
}
