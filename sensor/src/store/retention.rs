//! Retention: records older than `store.max_age` go, and the oldest go
//! while the store uses more than `store.max_bytes`. Each cut removes a
//! prefix of the chain and keeps, sealed with the chain's key, the link it
//! was cut at (`prunes`), so that `verify` checks what is left from there.
//! The cut records leave the hourly sums, and the actors and files only
//! they named go with them. Freed pages go back to the file system
//! (incremental vacuum).

use std::time::Duration;

use rusqlite::Connection;

use super::{chain::Key, insert, rollup};

/// Size cuts in one run at most.
const SIZE_CUTS_MAX: usize = 4;

/// What retention keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// Bytes the store's pages hold (not counting free pages).
pub fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// Applies `retention`; returns the records removed.
pub fn apply(conn: &mut Connection, key: &Key, retention: &Retention) -> rusqlite::Result<u64> {
    let mut removed = 0;
    if let Some(age) = retention.max_age {
        let cutoff = crate::enrich::clock::unix_now_ns() - age.as_nanos() as i128;
        let cutoff = cutoff.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        let through: Option<i64> = conn.query_row(
            "SELECT max(seq) FROM records WHERE time_ns < ?1",
            [cutoff],
            |r| r.get(0),
        )?;
        if let Some(through) = through {
            removed += cut(conn, key, through, "age")?;
        }
    }
    // A cut frees about its share of the records' pages, not exactly
    // (indexes, actors and sums shrink less): cut again while over.
    for _ in 0..SIZE_CUTS_MAX {
        let Some(max) = retention.max_bytes else {
            break;
        };
        let used = used_bytes(conn)?;
        if used <= max {
            break;
        }
        // Records are numbered without gaps: the first and last give the
        // count without reading them all.
        // Two statements: SQLite reads one end of the table for a lone
        // min() or max(), but all of it for both in one.
        let first: Option<i64> =
            conn.query_row("SELECT min(seq) FROM records", [], |r| r.get(0))?;
        let last: Option<i64> = conn.query_row("SELECT max(seq) FROM records", [], |r| r.get(0))?;
        let (Some(first), Some(last)) = (first, last) else {
            break;
        };
        let count = last - first + 1;
        // Down to 90% of the bound, so that it is not cut again at once.
        let share = (used - max * 9 / 10) as f64 / used as f64;
        let drop = ((count as f64 * share).ceil() as i64).clamp(1, count);
        removed += cut(conn, key, first + drop - 1, "size")?;
    }
    if removed > 0 {
        conn.execute_batch("PRAGMA incremental_vacuum")?;
    }
    Ok(removed)
}

/// Removes every record through `through`, keeping the sealed link.
fn cut(conn: &mut Connection, key: &Key, through: i64, reason: &str) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    let link: Vec<u8> = tx.query_row("SELECT mac FROM records WHERE seq = ?1", [through], |r| {
        r.get(0)
    })?;
    rollup::subtract_through(&tx, through)?;
    insert::mark_cut(&tx, through)?;
    let removed = tx.execute("DELETE FROM records WHERE seq <= ?1", [through])? as u64;
    insert::remove_orphans(&tx)?;
    let link: [u8; 32] = link.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "mac".into(), rusqlite::types::Type::Blob)
    })?;
    let seal = key.seal(through as u64, &link, removed);
    tx.execute(
        "INSERT INTO prunes (through_seq, mac, removed, time_ns, reason, seal) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![
            through,
            &link[..],
            removed as i64,
            crate::enrich::clock::unix_now_ns() as i64,
            reason,
            &seal[..]
        ],
    )?;
    tx.commit()?;
    tracing::info!(
        through,
        removed,
        reason,
        "audit store retention removed records"
    );
    Ok(removed)
}
