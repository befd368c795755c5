//! An output's disk spool: batches its destination could not take yet,
//! kept in order in segment files under the output's spool directory and
//! replayed oldest first. It survives the agent stopping, crashing or
//! being upgraded: the next agent with the same output replays it before
//! anything new.
//!
//! Layout: `NNNNNNNNNNNNNNNN.seg` files (16 digits, ascending) of frames,
//! each `WWS1 | payload length u32 | records u32 | crc32 u32 | payload`
//! (little-endian) whose payload is the records' end offsets (u32 each)
//! then their bytes; a `cursor` file (`SEGMENT OFFSET SKIP`) says where
//! replay stands: the frame at OFFSET of SEGMENT, less its first SKIP
//! records (delivered before a partial failure). Frames are appended to
//! the last segment, a new one started past [`SEGMENT_BYTES`]; a segment
//! is deleted once replay passes its end. At open every frame still to
//! replay is checked; a torn or corrupt one (a crash in mid-append, a
//! damaged disk) ends its segment there: the rest of that segment is cut
//! off, logged and counted dropped.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{lockfile, output::sink::Batch};

const MAGIC: &[u8; 4] = b"WWS1";
const HEADER: usize = 16;
/// A segment past this size is closed and a new one started.
const SEGMENT_BYTES: u64 = 16 << 20;
/// Appends reach the disk (fdatasync) at most this often: the spool
/// survives an agent crash at once (the page cache), a power loss after
/// this long.
const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "cannot use the spool directory {path} (check that it is a writable directory, or set output.spool_dir)"
    )]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the spool directory {path} is in use by another agent (pid {holder}): \
         give each agent its own output.spool_dir"
    )]
    InUse { path: PathBuf, holder: String },
}

/// Why a batch was not spooled.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the spool is at its cap of {cap} bytes")]
    Full { cap: u64 },
    #[error("cannot write to the spool")]
    Io(#[from] io::Error),
}

/// What [`Spool::open`] found from an earlier run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub records: u64,
    /// Corrupt or torn bytes cut off, and the records their headers
    /// still counted.
    pub cut_bytes: u64,
    pub cut_records: u64,
}

struct Segment {
    seq: u64,
    /// Bytes in the file.
    len: u64,
}

pub struct Spool {
    dir: PathBuf,
    cap: u64,
    /// Oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    /// Where replay stands in the first segment, and records of that
    /// frame already delivered.
    offset: u64,
    skip: u32,
    /// Records and bytes still to replay.
    records: u64,
    /// The frame at the cursor, read once.
    head: Option<(Batch, u64)>,
    synced: Instant,
    _lock: File,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, holding at most `cap` bytes,
    /// and checks what an earlier run left.
    pub fn open(dir: &Path, cap: u64) -> Result<(Self, Recovered), SpoolError> {
        let err = |source| SpoolError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        let lock = match lockfile::try_lock(&dir.join("lock"), 0o700).map_err(err)? {
            lockfile::Lock::Held(file) => file,
            lockfile::Lock::Taken(mut file) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(SpoolError::InUse {
                    path: dir.to_path_buf(),
                    holder: holder.trim().to_owned(),
                });
            }
        };
        let mut lock = lock;
        let _ = lock.set_len(0);
        let _ = write!(lock, "{}", std::process::id());
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let name = entry.map_err(err)?.file_name();
            if let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let (cursor_seq, offset, skip) = read_cursor(dir).unwrap_or((0, 0, 0));
        let mut spool = Self {
            dir: dir.to_path_buf(),
            cap,
            segments: VecDeque::new(),
            writer: None,
            offset: 0,
            skip: 0,
            records: 0,
            head: None,
            synced: Instant::now(),
            _lock: lock,
        };
        let mut recovered = Recovered::default();
        for seq in seqs {
            let path = spool.segment_path(seq);
            if seq < cursor_seq {
                // Replayed before the last stop; its deletion was lost.
                let _ = fs::remove_file(&path);
                continue;
            }
            let start = if seq == cursor_seq && spool.segments.is_empty() {
                spool.offset = offset;
                spool.skip = skip;
                offset
            } else {
                0
            };
            let scan = scan_segment(&path, start).map_err(err)?;
            if scan.valid_end < scan.len {
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(scan.valid_end))
                    .map_err(err)?;
                recovered.cut_bytes += scan.len - scan.valid_end;
                recovered.cut_records += scan.cut_records;
            }
            let first = spool.segments.is_empty();
            spool.records += scan.records
                - if first {
                    u64::from(spool.skip).min(scan.records)
                } else {
                    0
                };
            spool.segments.push_back(Segment {
                seq,
                len: scan.valid_end,
            });
        }
        if spool.segments.is_empty() {
            spool.offset = 0;
            spool.skip = 0;
        }
        if spool.offset > spool.segments.front().map_or(0, |s| s.len) {
            spool.offset = 0;
            spool.skip = 0;
        }
        recovered.records = spool.records;
        spool.drop_replayed().map_err(err)?;
        Ok((spool, recovered))
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016}.seg"))
    }

    /// The most bytes it may hold on disk.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Records waiting to be replayed.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes on disk, replayed parts of the first segment included.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Bytes still to replay.
    pub fn pending_bytes(&self) -> u64 {
        self.disk_bytes() - self.offset
    }

    /// How many leading records of `batch` fit under the cap as one frame.
    pub fn fitting(&self, batch: &Batch) -> usize {
        let room = self.cap.saturating_sub(self.disk_bytes());
        batch
            .ends
            .iter()
            .enumerate()
            .take_while(|(i, end)| (HEADER + 4 * (i + 1) + **end) as u64 <= room)
            .count()
    }

    /// Appends `batch` as one frame after everything spooled.
    pub fn append(&mut self, batch: &Batch) -> Result<(), AppendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let frame = encode_frame(batch);
        if self.disk_bytes() + frame.len() as u64 > self.cap {
            return Err(AppendError::Full { cap: self.cap });
        }
        let roll = self.segments.back().is_none_or(|s| s.len >= SEGMENT_BYTES);
        if roll || self.writer.is_none() {
            let seq = match self.segments.back() {
                Some(last) if !roll => last.seq,
                Some(last) => last.seq + 1,
                None => 1,
            };
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.segment_path(seq))?;
            if roll {
                self.segments.push_back(Segment { seq, len: 0 });
            }
            self.writer = Some(file);
        }
        let (Some(writer), Some(last)) = (&mut self.writer, self.segments.back_mut()) else {
            return Err(AppendError::Io(io::Error::other("no segment to append to")));
        };
        if let Err(err) = writer.write_all(&frame) {
            // Cut a partial frame back off, so the segment stays whole.
            let _ = writer.set_len(last.len);
            return Err(err.into());
        }
        last.len += frame.len() as u64;
        self.records += batch.records() as u64;
        if self.synced.elapsed() >= SYNC_EVERY {
            let _ = writer.sync_data();
            self.synced = Instant::now();
        }
        Ok(())
    }

    /// The oldest batch not yet delivered, if any.
    pub fn head(&mut self) -> io::Result<Option<&Batch>> {
        if self.head.is_none() {
            let Some(first) = self.segments.front() else {
                return Ok(None);
            };
            if self.offset >= first.len {
                return Ok(None);
            }
            let mut file = File::open(self.segment_path(first.seq))?;
            file.seek(SeekFrom::Start(self.offset))?;
            let Some((batch, size)) = read_frame(&mut file)? else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a spool frame changed after it was checked",
                ));
            };
            let batch = if self.skip > 0 {
                batch.tail((self.skip as usize).min(batch.records()))
            } else {
                batch
            };
            self.head = Some((batch, size));
        }
        Ok(self.head.as_ref().map(|(b, _)| b))
    }

    /// The first `n` records of the head were delivered (or given up).
    pub fn consume(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let Some((batch, size)) = self.head.take() else {
            return Ok(());
        };
        let n = n.min(batch.records());
        self.records -= n as u64;
        if n < batch.records() {
            self.skip += n as u32;
            self.head = Some((batch.tail(n), size));
        } else {
            self.offset += size;
            self.skip = 0;
        }
        self.drop_replayed()?;
        write_cursor(
            &self.dir,
            self.segments.front().map_or(0, |s| s.seq),
            self.offset,
            self.skip,
        )
    }

    /// Deletes segments replay has passed (the last one too, when all is
    /// replayed: the next append starts a fresh one).
    fn drop_replayed(&mut self) -> io::Result<()> {
        while let Some(first) = self.segments.front() {
            let (seq, len) = (first.seq, first.len);
            let last = self.segments.len() == 1;
            if self.offset < len || (last && (len == 0 || self.records > 0)) {
                break;
            }
            fs::remove_file(self.segment_path(seq)).or_else(ignore_missing)?;
            self.segments.pop_front();
            self.offset = 0;
            self.skip = 0;
            if last {
                self.writer = None;
                // Keep numbering upwards, so a cursor never names a
                // reused segment.
                self.segments.push_back(Segment {
                    seq: seq + 1,
                    len: 0,
                });
                File::create(self.segment_path(seq + 1))?;
            }
        }
        Ok(())
    }
}

fn ignore_missing(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(err)
    }
}

fn encode_frame(batch: &Batch) -> Vec<u8> {
    let mut payload = Vec::with_capacity(batch.ends.len() * 4 + batch.bytes.len());
    for end in &batch.ends {
        payload.extend_from_slice(&(*end as u32).to_le_bytes());
    }
    payload.extend_from_slice(&batch.bytes);
    let records = batch.ends.len() as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&records.to_le_bytes());
    crc.update(&payload);
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&records.to_le_bytes());
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Reads one whole, intact frame: the batch and the frame's size. `None`
/// at the end of the file, or where the frame is torn or corrupt.
fn read_frame(file: &mut File) -> io::Result<Option<(Batch, u64)>> {
    let mut header = [0; HEADER];
    if !read_all(file, &mut header)? || &header[..4] != MAGIC {
        return Ok(None);
    }
    let (len, records, crc) = (
        u32_at(&header, 4) as usize,
        u32_at(&header, 8),
        u32_at(&header, 12),
    );
    if len < records as usize * 4 || len > 1 << 30 {
        return Ok(None);
    }
    let mut payload = vec![0; len];
    if !read_all(file, &mut payload)? {
        return Ok(None);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&records.to_le_bytes());
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(None);
    }
    let table = records as usize * 4;
    let ends: Vec<usize> = (0..records as usize)
        .map(|i| u32_at(&payload, i * 4) as usize)
        .collect();
    let bytes = payload.split_off(table);
    let ordered = ends.windows(2).all(|w| w[0] <= w[1]);
    if !ordered || ends.last().is_some_and(|&end| end != bytes.len()) {
        return Ok(None);
    }
    Ok(Some((Batch { bytes, ends }, (HEADER + len) as u64)))
}

/// Fills `buf`; false at a clean or torn end of file.
fn read_all(file: &mut File, buf: &mut [u8]) -> io::Result<bool> {
    match file.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(err) => Err(err),
    }
}

struct Scan {
    len: u64,
    valid_end: u64,
    records: u64,
    cut_records: u64,
}

/// Checks the frames of a segment from `start`.
fn scan_segment(path: &Path, start: u64) -> io::Result<Scan> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut at = start.min(len);
    file.seek(SeekFrom::Start(at))?;
    let mut records = 0;
    while let Some((batch, size)) = read_frame(&mut file)? {
        records += batch.records() as u64;
        at += size;
    }
    let mut cut_records = 0;
    if at < len {
        // What the damaged frame's header still claims, if it is readable.
        let mut header = [0; HEADER];
        file.seek(SeekFrom::Start(at))?;
        if read_all(&mut file, &mut header)? && &header[..4] == MAGIC {
            cut_records = u64::from(u32_at(&header, 8));
        }
    }
    Ok(Scan {
        len,
        valid_end: at,
        records,
        cut_records,
    })
}

fn read_cursor(dir: &Path) -> Option<(u64, u64, u32)> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut fields = text.split_whitespace();
    Some((
        fields.next()?.parse().ok()?,
        fields.next()?.parse().ok()?,
        fields.next()?.parse().ok()?,
    ))
}

/// Written to a temporary file and renamed over: never half a cursor.
fn write_cursor(dir: &Path, seq: u64, offset: u64, skip: u32) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    fs::write(&tmp, format!("{seq} {offset} {skip}\n"))?;
    fs::rename(tmp, dir.join("cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[&str]) -> Batch {
        let mut b = Batch::default();
        for r in records {
            b.push(r.as_bytes());
        }
        b
    }

    fn drain(spool: &mut Spool) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(head) = spool.head().expect("head") {
            let n = head.records();
            got.extend((0..n).map(|i| String::from_utf8_lossy(head.record(i)).into_owned()));
            spool.consume(n).expect("consume");
        }
        got
    }

    #[test]
    fn batches_replay_in_order_across_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut spool, found) = Spool::open(dir.path(), 1 << 20).expect("open");
            assert_eq!(found, Recovered::default());
            spool.append(&batch(&["a\n", "b\n"])).expect("append");
            spool.append(&batch(&["c\n"])).expect("append");
            // One record of the head delivered, then the agent stops.
            assert_eq!(spool.head().expect("head").map(Batch::records), Some(2));
            spool.consume(1).expect("consume");
            assert_eq!(spool.records(), 2);
        }
        let (mut spool, found) = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(found.records, 2);
        spool.append(&batch(&["d\n"])).expect("append");
        assert_eq!(drain(&mut spool), ["b\n", "c\n", "d\n"]);
        assert!(spool.is_empty());
        // Replayed segments are gone; what is left is an empty segment.
        assert_eq!(spool.disk_bytes(), 0);
        drop(spool);
        let (mut spool, found) = Spool::open(dir.path(), 1 << 20).expect("again");
        assert_eq!(found.records, 0);
        spool.append(&batch(&["e\n"])).expect("append");
        assert_eq!(drain(&mut spool), ["e\n"]);
    }

    #[test]
    fn the_cap_refuses_a_batch_that_would_pass_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 100).expect("open");
        spool.append(&batch(&[&"x".repeat(60)])).expect("fits");
        let err = spool.append(&batch(&[&"y".repeat(60)])).expect_err("full");
        assert!(matches!(err, AppendError::Full { cap: 100 }), "{err}");
        assert_eq!(spool.records(), 1);
    }

    #[test]
    fn a_torn_frame_is_cut_off_and_counted_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
            spool.append(&batch(&["a\n"])).expect("append");
            spool.append(&batch(&["b\n", "c\n"])).expect("append");
        }
        let seg = dir.path().join(format!("{:016}.seg", 1));
        let len = fs::metadata(&seg).expect("stat").len();
        // A crash in mid-append: the last frame lost its last 3 bytes.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(len - 3))
            .expect("truncate");
        let (mut spool, found) = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(found.records, 1);
        assert_eq!(found.cut_records, 2);
        assert!(found.cut_bytes > 0);
        assert_eq!(drain(&mut spool), ["a\n"]);
        // A flipped byte fails the checksum the same way.
        spool.append(&batch(&["d\n"])).expect("append");
        spool.append(&batch(&["e\n"])).expect("append");
        drop(spool);
        let seg = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.extension().is_some_and(|x| x == "seg")
                    && fs::metadata(p).is_ok_and(|m| m.len() > 0)
            })
            .expect("a segment");
        let mut bytes = fs::read(&seg).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&seg, bytes).expect("write");
        let (mut spool, found) = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!((found.records, found.cut_records), (1, 1));
        assert_eq!(drain(&mut spool), ["d\n"]);
    }

    #[test]
    fn a_second_agent_cannot_share_a_spool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Spool::open(dir.path(), 1 << 20).expect("open");
        let err = Spool::open(dir.path(), 1 << 20).err().expect("in use");
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
    }
}
