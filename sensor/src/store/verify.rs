//! `verify`: walks the chain from its start (the genesis, or the last
//! retention cut) to its head and names the first place it breaks.

use std::path::Path;

use rusqlite::Connection;

use super::{
    StoreError,
    chain::{Head, Key, Link},
    meta,
};

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intact {
    /// Records checked.
    pub records: u64,
    /// The first record kept (retention removed those before), if any.
    pub first: Option<u64>,
    /// Records retention removed, and where the last cut was.
    pub pruned: u64,
    pub pruned_through: Option<u64>,
    pub head: Head,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error(
        "record {seq} does not match its chain link: it was changed, or records before it were \
         changed, inserted or reordered"
    )]
    Altered { seq: u64 },
    #[error("records {from} to {to} are missing: removed outside retention")]
    Missing { from: u64, to: u64 },
    #[error(
        "the chain ends at record {last} but its head says {head}: the records after {last} were \
         removed"
    )]
    Truncated { last: u64, head: u64 },
    #[error("the store's head ({store}) is not the head given ({given}): {why}")]
    HeadMismatch {
        store: String,
        given: String,
        why: &'static str,
    },
    #[error(
        "the retention cut through record {through} is not sealed by this key: it was forged or altered"
    )]
    ForgedCut { through: u64 },
}

/// Verifies the store at `path` (open read-only in `conn`) with `key`;
/// `given`: a head from outside (a heartbeat the SIEM kept), which the
/// chain must contain.
pub fn verify(
    conn: &Connection,
    path: &Path,
    key: &Key,
    given: Option<Head>,
) -> Result<Result<Intact, Broken>, StoreError> {
    let at = |e| StoreError::at(path, e);
    let Some(meta) = meta::read(conn, path)? else {
        return Err(StoreError::NotAStore(path.to_path_buf()));
    };
    if meta.key_id != key.id() {
        return Err(StoreError::OtherKey {
            path: path.to_path_buf(),
            store_key: meta.key_id,
            key: key.id(),
        });
    }
    // Where the chain starts: the genesis, or the last sealed cut.
    let mut prev: Link = key.genesis(&meta.store_id);
    let mut expect = 1u64;
    let mut pruned = 0u64;
    let mut pruned_through = None;
    {
        let mut cuts = conn
            .prepare("SELECT through_seq, mac, removed, seal FROM prunes ORDER BY through_seq")
            .map_err(at)?;
        let mut rows = cuts.query([]).map_err(at)?;
        while let Some(row) = rows.next().map_err(at)? {
            let through = row.get::<_, i64>(0).map_err(at)? as u64;
            let link = blob32(row.get(1).map_err(at)?);
            let removed = row.get::<_, i64>(2).map_err(at)? as u64;
            let seal = blob32(row.get(3).map_err(at)?);
            match (link, seal) {
                (Some(link), Some(seal)) if key.seal(through, &link, removed) == seal => {
                    prev = link;
                    expect = through + 1;
                    pruned += removed;
                    pruned_through = Some(through);
                }
                _ => return Ok(Err(Broken::ForgedCut { through })),
            }
        }
    }
    // Records at or before the last cut are checked by nothing: they
    // should not exist.
    let stale: Option<i64> = conn
        .query_row(
            "SELECT min(seq) FROM records WHERE seq < ?1",
            [expect as i64],
            |r| r.get(0),
        )
        .map_err(at)?;
    if let Some(seq) = stale {
        return Ok(Err(Broken::Altered {
            seq: seq.max(0) as u64,
        }));
    }
    let start = Head {
        seq: expect - 1,
        link: prev,
    };
    let (records, first, head) = match walk(conn, path, key, start)? {
        Ok(walked) => walked,
        Err(broken) => return Ok(Err(broken)),
    };
    if head.seq < meta.head.seq {
        return Ok(Err(Broken::Truncated {
            last: head.seq,
            head: meta.head.seq,
        }));
    }
    if head != meta.head {
        return Ok(Err(Broken::HeadMismatch {
            store: meta.head.text(),
            given: head.text(),
            why: "meta's head is not the chain's last link",
        }));
    }
    if let Some(given) = given
        && !contains(
            conn,
            path,
            &head,
            &given,
            pruned_through,
            &key.genesis(&meta.store_id),
        )?
    {
        return Ok(Err(if given.seq > head.seq {
            Broken::Truncated {
                last: head.seq,
                head: given.seq,
            }
        } else {
            Broken::HeadMismatch {
                store: head.text(),
                given: given.text(),
                why: "the record at that sequence number has another link: the chain was rewritten",
            }
        }));
    }
    Ok(Ok(Intact {
        records,
        first,
        pruned,
        pruned_through,
        head,
    }))
}

/// Records read from the database at a time, for the hashing thread.
const BATCH: usize = 4096;

/// A run of records in chain order: their bytes end to end.
#[derive(Default)]
struct Batch {
    seqs: Vec<u64>,
    links: Vec<Option<Link>>,
    ends: Vec<usize>,
    bytes: Vec<u8>,
}

/// Records walked, the first, and the last link.
type Walked = (u64, Option<u64>, Head);

/// Walks the records after `start` to the last: this thread reads them,
/// another recomputes their links (the two take about as long). Returns
/// how many there were, the first, and the last link; or where the chain
/// breaks.
fn walk(
    conn: &Connection,
    path: &Path,
    key: &Key,
    start: Head,
) -> Result<Result<Walked, Broken>, StoreError> {
    let at = |e| StoreError::at(path, e);
    let linker = key.linker();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
        let hasher = scope.spawn(move || {
            let mut head = start;
            let mut records = 0u64;
            let mut first = None;
            for batch in rx {
                let mut from = 0;
                for ((seq, link), end) in batch.seqs.iter().zip(&batch.links).zip(&batch.ends) {
                    let (seq, record) = (*seq, &batch.bytes[from..*end]);
                    from = *end;
                    if seq != head.seq + 1 {
                        return Err(Broken::Missing {
                            from: head.seq + 1,
                            to: seq - 1,
                        });
                    }
                    let want = linker.link(&head.link, seq, record);
                    if *link != Some(want) {
                        return Err(Broken::Altered { seq });
                    }
                    first.get_or_insert(seq);
                    head = Head { seq, link: want };
                    records += 1;
                }
            }
            Ok((records, first, head))
        });
        let read = || -> Result<(), StoreError> {
            let mut stmt = conn
                .prepare("SELECT seq, record, mac FROM records WHERE seq > ?1 ORDER BY seq")
                .map_err(at)?;
            let mut rows = stmt.query([start.seq as i64]).map_err(at)?;
            let mut batch = Batch::default();
            while let Some(row) = rows.next().map_err(at)? {
                let seq = row.get::<_, i64>(0).map_err(at)?;
                let record = row
                    .get_ref(1)
                    .map_err(at)?
                    .as_bytes()
                    .map_err(|e| at(e.into()))?;
                batch.seqs.push(seq as u64);
                batch.bytes.extend_from_slice(record);
                batch.ends.push(batch.bytes.len());
                batch.links.push(
                    row.get_ref(2)
                        .ok()
                        .and_then(|v| v.as_blob().ok())
                        .and_then(|b| Link::try_from(b).ok()),
                );
                if batch.seqs.len() == BATCH && tx.send(std::mem::take(&mut batch)).is_err() {
                    // The hasher found a break and stopped.
                    return Ok(());
                }
            }
            // An error here: the hasher stopped, at a break.
            let _ = tx.send(batch);
            Ok(())
        };
        let read = read();
        drop(tx);
        let walked = hasher
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read.map(|()| walked)
    })
}

/// Whether the verified chain (ending at `head`) has `given` as a link.
fn contains(
    conn: &Connection,
    path: &Path,
    head: &Head,
    given: &Head,
    pruned_through: Option<u64>,
    genesis: &Link,
) -> Result<bool, StoreError> {
    if given.seq > head.seq {
        return Ok(false);
    }
    if pruned_through.is_some_and(|t| given.seq <= t) {
        // Removed by retention: nothing left to compare (the cut's own
        // link, when it is that one).
        return Ok(true);
    }
    if given.seq == 0 {
        // An empty store's head: the genesis.
        return Ok(given.link == *genesis);
    }
    let link: Option<Vec<u8>> = rusqlite::OptionalExtension::optional(conn.query_row(
        "SELECT mac FROM records WHERE seq = ?1",
        [given.seq as i64],
        |r| r.get(0),
    ))
    .map_err(|e| StoreError::at(path, e))?;
    Ok(link.and_then(blob32) == Some(given.link))
}

fn blob32(bytes: Vec<u8>) -> Option<Link> {
    bytes.try_into().ok()
}
