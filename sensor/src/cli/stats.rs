//! `weightwarden stats`: a time window summarised (`store::stats`), as
//! tables for people or one JSON object for programs.

use std::io::Write;

use serde_json::{Value, json};

use super::{
    args::StatsArgs,
    exit,
    query::Users,
    table::{Failure, Format, default_format, table_of},
    when,
};
use crate::{
    enrich::clock::format_unix_ns,
    store::stats::{self, Stats},
};

pub fn execute(args: &StatsArgs) -> u8 {
    let now = when::now_ns();
    let window = || {
        when::window(Some(args.since), args.until, now)
            .map(|(since, until)| (since.unwrap_or(i64::MIN), until.unwrap_or(now)))
    };
    let ((since, until), db, conn) = match args.store.open_read(window) {
        Ok(opened) => opened,
        Err(status) => return status,
    };
    let s = match stats::stats(&conn, &db, since, until) {
        Ok(s) => s,
        Err(err) => return Failure::Store(err).status(),
    };
    let format = match (args.json, args.table) {
        (true, _) => Format::Json,
        (_, true) => Format::Table,
        _ => default_format(),
    };
    let mut users = Users::default();
    let text = match format {
        Format::Json => format!("{}\n", as_json(&s, &mut users)),
        Format::Table | Format::Csv => as_tables(&s, &mut users),
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) => Failure::Write(e).status(),
    }
}

/// `name(uid)`, or the uid alone when this host has no such user.
fn user(users: &mut Users, uid: Option<i64>) -> String {
    match uid {
        Some(uid) => users
            .name(uid)
            .map_or_else(|| uid.to_string(), |n| format!("{n}({uid})")),
        None => "-".to_owned(),
    }
}

fn as_tables(s: &Stats, users: &mut Users) -> String {
    let mut out = format!(
        "{} records from {} to {}\n",
        s.records,
        format_unix_ns(s.since_ns.into()),
        format_unix_ns(s.until_ns.into())
    );
    let mut section = |title: &str, headers: &[&str], rows: Vec<Vec<String>>| {
        out.push_str(&format!("\n{title}\n"));
        if rows.is_empty() {
            out.push_str("(none)\n");
        } else {
            out.push_str(&table_of(headers, rows));
        }
    };
    let reads = s.reads.iter().map(|r| {
        vec![
            r.reader.clone(),
            user(users, r.uid),
            r.path.clone().unwrap_or_else(|| "-".into()),
            r.bytes.to_string(),
            r.opens.to_string(),
            r.mmaps.to_string(),
        ]
    });
    section(
        "Who read which weights (bytes read; opens; maps)",
        &["reader", "user", "path", "bytes", "opens", "mmaps"],
        reads.collect(),
    );
    let top = s.top_readers.iter().map(|r| {
        vec![
            r.reader.clone(),
            user(users, r.uid),
            r.bytes.to_string(),
            r.files.to_string(),
        ]
    });
    section(
        "Top readers by bytes",
        &["reader", "user", "bytes", "files"],
        top.collect(),
    );
    let counts = |c: &[stats::Count]| {
        c.iter()
            .map(|c| vec![c.name.clone(), c.count.to_string()])
            .collect()
    };
    section("Detections", &["detection", "count"], counts(&s.detections));
    section(
        "Records by action",
        &["action", "count"],
        counts(&s.actions),
    );
    out
}

fn as_json(s: &Stats, users: &mut Users) -> Value {
    let mut name = |uid: Option<i64>| uid.and_then(|u| users.name(u));
    let reads: Vec<Value> = s
        .reads
        .iter()
        .map(|r| {
            json!({
                "reader": r.reader, "uid": r.uid, "user": name(r.uid), "path": r.path,
                "bytes": r.bytes, "opens": r.opens, "mmaps": r.mmaps,
            })
        })
        .collect();
    let top: Vec<Value> = s
        .top_readers
        .iter()
        .map(|r| {
            json!({
                "reader": r.reader, "uid": r.uid, "user": name(r.uid),
                "bytes": r.bytes, "files": r.files,
            })
        })
        .collect();
    let counts = |key: &str, c: &[stats::Count]| -> Vec<Value> {
        c.iter()
            .map(|c| json!({ key: c.name, "count": c.count }))
            .collect()
    };
    json!({
        "since": format_unix_ns(s.since_ns.into()),
        "until": format_unix_ns(s.until_ns.into()),
        "records": s.records,
        "reads": reads,
        "top_readers": top,
        "detections": counts("detection", &s.detections),
        "actions": counts("action", &s.actions),
    })
}
