//! `timeline`: the records of one process tree, in time order — the
//! process (or a container's processes), its ancestors through the
//! actors' `ppid`, and every descendant, recursively.
//!
//! A process is a pid and its start time: pids are reused. The start time
//! a record carries is the kernel's boot-clock start turned into wall-clock
//! time with the agent's current sample of the clocks' offset, which it
//! takes again on every heartbeat, and `/proc` gives it only to the clock
//! tick for processes older than the agent: the same process's records
//! can differ by microseconds to a tick. Start times closer than
//! [`SAME_START_NS`] are one process here.
//!
//! The tree is walked with one indexed query per process (`actors_pid`,
//! then `records_actor` for a pid's records; `actors_parent` for its
//! children) rather than one recursive CTE: each step needs the pid-reuse
//! checks below, and a tree is small next to the store.

use std::{collections::VecDeque, path::Path};

use rusqlite::{Connection, types::Value};

use super::{
    StoreError,
    query::{COLUMNS, Found, glob_literal, joined},
};

/// Start times this close are one process (a clock tick is 10 ms at
/// `USER_HZ` 100; a pid comes back far later than this).
pub const SAME_START_NS: i64 = 50_000_000;

/// Ancestors followed at most (a loop in edited data must end).
const MAX_ANCESTORS: usize = 64;

/// Whose tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// The latest process with this pid (among those with records in the
    /// window).
    Pid(i64),
    /// Every process of the container whose id starts with this.
    Container(String),
}

/// A process as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i64,
    /// The lowest and highest start time its records carry; `None` when
    /// they carry none.
    pub start: Option<(i64, i64)>,
    /// Its parent's pid at its first record (a reparented process's later
    /// records name its new parent).
    pub ppid: Option<i64>,
    pub first_ns: i64,
    pub last_ns: i64,
    /// When it exited, if the store has its `exit`.
    pub exit_ns: Option<i64>,
}

impl Process {
    fn start_ns(&self) -> Option<i64> {
        self.start.map(|(lo, _)| lo)
    }

    fn is(&self, other: &Process) -> bool {
        self.pid == other.pid && self.start == other.start
    }

    /// The `WHERE` terms on `actors` naming this process, and their
    /// values.
    fn identity(&self) -> (&'static str, Vec<Value>) {
        match self.start {
            Some((lo, hi)) => (
                "pid = ? AND start_ns BETWEEN ? AND ?",
                vec![
                    Value::Integer(self.pid),
                    Value::Integer(lo),
                    Value::Integer(hi),
                ],
            ),
            None => (
                "pid = ? AND start_ns IS NULL",
                vec![Value::Integer(self.pid)],
            ),
        }
    }
}

/// How a process is related to the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Ancestor,
    Root,
    Descendant,
}

impl Relation {
    pub fn name(self) -> &'static str {
        match self {
            Relation::Ancestor => "ancestor",
            Relation::Root => "self",
            Relation::Descendant => "descendant",
        }
    }
}

/// A process of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub process: Process,
    pub relation: Relation,
    /// Generations from the root: -1 its parent, 1 its children.
    pub depth: i32,
    /// An ancestor's records after this time are not the tree's.
    until_ns: Option<i64>,
}

/// A process tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub members: Vec<Member>,
    /// `Root::Pid`: the earlier processes that had the pid (not shown).
    pub earlier: Vec<Process>,
}

/// The time window records must fall in (Unix ns, inclusive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
}

impl Window {
    fn bounds(&self) -> (i64, i64) {
        (
            self.since_ns.unwrap_or(i64::MIN),
            self.until_ns.unwrap_or(i64::MAX),
        )
    }
}

struct Reader<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

impl Reader<'_> {
    fn at(&self, e: rusqlite::Error) -> StoreError {
        StoreError::at(self.path, e)
    }

    /// The processes whose actors match `cond` (on `actors`) and have
    /// records within `window`, one per (pid, start) with start times
    /// closer than [`SAME_START_NS`] merged.
    fn processes(
        &self,
        cond: &str,
        params: Vec<Value>,
        window: Window,
    ) -> Result<Vec<Process>, StoreError> {
        let (since, until) = window.bounds();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT a.pid, a.start_ns, min(r.time_ns), max(r.time_ns), \
                 max(CASE WHEN r.action = 'exit' THEN r.time_ns END) \
                 FROM records r INDEXED BY records_actor JOIN actors a ON a.id = r.actor \
                 WHERE r.actor IN (SELECT id FROM actors WHERE {cond}) \
                 AND r.time_ns >= ? AND r.time_ns <= ? \
                 GROUP BY a.pid, a.start_ns ORDER BY a.pid, a.start_ns"
            ))
            .map_err(|e| self.at(e))?;
        let mut params = params;
        params.extend([Value::Integer(since), Value::Integer(until)]);
        let groups = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                let start: Option<i64> = r.get(1)?;
                Ok(Process {
                    pid: r.get(0)?,
                    start: start.map(|s| (s, s)),
                    ppid: None,
                    first_ns: r.get(2)?,
                    last_ns: r.get(3)?,
                    exit_ns: r.get(4)?,
                })
            })
            .map_err(|e| self.at(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.at(e))?;
        let mut merged: Vec<Process> = Vec::new();
        for g in groups {
            match (merged.last_mut(), g.start) {
                (Some(p), Some((s, _)))
                    if p.pid == g.pid && p.start.is_some_and(|(_, hi)| s - hi <= SAME_START_NS) =>
                {
                    p.start = p.start.map(|(lo, _)| (lo, s));
                    p.first_ns = p.first_ns.min(g.first_ns);
                    p.last_ns = p.last_ns.max(g.last_ns);
                    p.exit_ns = p.exit_ns.max(g.exit_ns);
                }
                _ => merged.push(g),
            }
        }
        for p in &mut merged {
            p.ppid = self.first_ppid(p)?;
        }
        Ok(merged)
    }

    fn first_ppid(&self, p: &Process) -> Result<Option<i64>, StoreError> {
        let (cond, params) = p.identity();
        self.conn
            .query_row(
                &format!(
                    "SELECT a.ppid FROM records r INDEXED BY records_actor \
                     JOIN actors a ON a.id = r.actor \
                     WHERE r.actor IN (SELECT id FROM actors WHERE {cond}) \
                     ORDER BY r.time_ns, r.seq LIMIT 1"
                ),
                rusqlite::params_from_iter(params),
                |r| r.get(0),
            )
            .map_err(|e| self.at(e))
    }

    fn of_pid(&self, pid: i64, window: Window) -> Result<Vec<Process>, StoreError> {
        self.processes("pid = ?", vec![Value::Integer(pid)], window)
    }

    /// `child`'s parent: the process with its ppid that started before
    /// it and had records before its last one.
    fn parent(&self, child: &Process) -> Result<Option<Process>, StoreError> {
        let Some(ppid) = child.ppid.filter(|p| *p > 1 && *p != child.pid) else {
            return Ok(None);
        };
        let candidates = self.of_pid(ppid, Window::default())?;
        Ok(candidates
            .into_iter()
            .filter(|p| p.first_ns <= child.last_ns)
            .filter(|p| match (p.start_ns(), child.start_ns()) {
                (Some(parent), Some(child)) => parent <= child,
                _ => true,
            })
            .max_by_key(|p| (p.start_ns(), p.first_ns)))
    }

    /// `parent`'s children: processes whose first record names it as
    /// parent, started while it lived and not before `not_before`.
    fn children(
        &self,
        parent: &Process,
        not_before: Option<i64>,
    ) -> Result<Vec<Process>, StoreError> {
        let since = parent.start_ns().unwrap_or(parent.first_ns);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT a.pid FROM actors a WHERE a.ppid = ?1 AND EXISTS \
                 (SELECT 1 FROM records r WHERE r.actor = a.id AND r.time_ns >= ?2)",
            )
            .map_err(|e| self.at(e))?;
        let pids = stmt
            .query_map([parent.pid, since], |r| r.get::<_, Option<i64>>(0))
            .map_err(|e| self.at(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.at(e))?;
        let mut children = Vec::new();
        for pid in pids.into_iter().flatten().filter(|p| *p != parent.pid) {
            let window = Window {
                since_ns: Some(since),
                until_ns: None,
            };
            for p in self.of_pid(pid, window)? {
                let started = p.start_ns();
                let born_of = p.ppid == Some(parent.pid)
                    && started.is_none_or(|s| {
                        parent.start_ns().is_none_or(|ps| s >= ps)
                            && parent.exit_ns.is_none_or(|exit| s <= exit)
                            && not_before.is_none_or(|nb| s >= nb)
                    });
                if born_of {
                    children.push(p);
                }
            }
        }
        Ok(children)
    }
}

/// The tree of `root` in the store at `path` (open in `conn`); its root
/// processes are those with records in `window`. `None`: no such process.
pub fn tree(
    conn: &Connection,
    path: &Path,
    root: &Root,
    window: Window,
) -> Result<Option<Tree>, StoreError> {
    let reader = Reader { conn, path };
    let (roots, earlier) = match root {
        Root::Pid(pid) => {
            let mut all = reader.of_pid(*pid, window)?;
            // The latest: by start time (unknown first), then records.
            all.sort_by_key(|p| (p.start_ns(), p.first_ns));
            let Some(latest) = all.pop() else {
                return Ok(None);
            };
            (vec![latest], all)
        }
        Root::Container(id) => {
            let glob = format!("{}*", glob_literal(id));
            let all = reader.processes(
                "container IS NOT NULL AND container GLOB ?",
                vec![Value::Text(glob)],
                window,
            )?;
            (all, Vec::new())
        }
    };
    if roots.is_empty() {
        return Ok(None);
    }
    let mut members: Vec<Member> = roots
        .iter()
        .map(|p| Member {
            process: p.clone(),
            relation: Relation::Root,
            depth: 0,
            until_ns: None,
        })
        .collect();
    let known = |members: &[Member], p: &Process| members.iter().any(|m| m.process.is(p));
    for r in &roots {
        let mut child = r.clone();
        for depth in 1..=MAX_ANCESTORS {
            let Some(parent) = reader.parent(&child)? else {
                break;
            };
            if known(&members, &parent) {
                break;
            }
            members.push(Member {
                process: parent.clone(),
                relation: Relation::Ancestor,
                depth: -(depth as i32),
                until_ns: Some(r.last_ns),
            });
            child = parent;
        }
    }
    let mut queue: VecDeque<(Process, i32, Option<i64>)> =
        roots.iter().map(|p| (p.clone(), 0, p.start_ns())).collect();
    while let Some((parent, depth, not_before)) = queue.pop_front() {
        for child in reader.children(&parent, not_before)? {
            if known(&members, &child) {
                continue;
            }
            members.push(Member {
                process: child.clone(),
                relation: Relation::Descendant,
                depth: depth + 1,
                until_ns: None,
            });
            queue.push_back((child, depth + 1, not_before));
        }
    }
    Ok(Some(Tree { members, earlier }))
}

/// Every record of the tree's processes within `window` (an ancestor's
/// up to its descendant's last), in time order, each with its member's
/// index in `tree.members`.
pub fn records(
    conn: &Connection,
    path: &Path,
    tree: &Tree,
    window: Window,
) -> Result<Vec<(usize, Found)>, StoreError> {
    let at = |e| StoreError::at(path, e);
    let mut out = Vec::new();
    for (i, m) in tree.members.iter().enumerate() {
        let (cond, mut params) = m.process.identity();
        let (since, until) = window.bounds();
        let until = m.until_ns.map_or(until, |u| u.min(until));
        params.extend([Value::Integer(since), Value::Integer(until)]);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM {} \
                 WHERE r.actor IN (SELECT id FROM actors WHERE {cond}) \
                 AND r.time_ns >= ? AND r.time_ns <= ?",
                joined(Some("records_actor"))
            ))
            .map_err(at)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), Found::from_row)
            .map_err(at)?;
        for row in rows {
            out.push((i, row.map_err(at)?));
        }
    }
    out.sort_by_key(|(_, f)| (f.time_ns, f.seq));
    Ok(out)
}

#[cfg(test)]
mod tests;
