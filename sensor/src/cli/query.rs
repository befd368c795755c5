//! `weightwarden query`: the records matching a responder's filter
//! (docs/store.md, Querying). Flags become a `store::query::Filter`; the
//! matches print as a table, CSV or the records' own JSON lines. Also the
//! columns a record gets in a table or CSV, which `timeline` shares.

use std::collections::HashMap;

use nix::unistd::{Uid, User};
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

use super::{
    args::QueryArgs,
    exit,
    table::{Failure, Format, Listing},
    when,
};
use crate::{
    enrich::clock::format_unix_ns,
    store::{
        query::{self, Filter, Found, SEVERITIES},
        row::severity_name,
    },
};

pub fn execute(args: &QueryArgs) -> u8 {
    let (filter, db, conn) = match args.store.open_read(|| filter(args, when::now_ns())) {
        Ok(opened) => opened,
        Err(status) => return status,
    };
    let format = args.format.format();
    let limit = filter.limit;
    // One row past the limit tells whether more matched.
    let probe = Filter {
        limit: limit.map(|n| n.saturating_add(1)),
        ..filter
    };
    let mut users = Users::default();
    let mut more = false;
    let listed = Listing::start(format, headers(format))
        .map_err(Failure::from)
        .and_then(|mut listing| {
            query::each(&conn, &db, &probe, |found| {
                if limit.is_some_and(|n| listing.rows() >= n) {
                    more = true;
                    return Ok(());
                }
                listing
                    .push(&found.record, || cells(&found, format, &mut users))
                    .map_err(Failure::from)
            })?;
            Ok(listing.finish()?)
        });
    match listed {
        Ok(rows) => {
            if more {
                eprintln!(
                    "weightwarden: showing the first {rows} matching records; more match \
                     (narrow the filter, or --limit 0 for all)"
                );
            } else if rows == 0 && format == Format::Table {
                eprintln!("weightwarden: no record matches");
            }
            exit::OK
        }
        Err(failure) => failure.status(),
    }
}

/// The flags as a filter, times resolved against `now_ns`; or what is
/// wrong with them.
pub fn filter(args: &QueryArgs, now_ns: i64) -> Result<Filter, String> {
    let (since_ns, until_ns) = when::window(args.window.since, args.window.until, now_ns)?;
    Ok(Filter {
        since_ns,
        until_ns,
        path: args.path.clone(),
        weight_set: args.weights.clone(),
        pid: args.pid.map(i64::from),
        exe: args.exe.clone(),
        uid: args.user.as_deref().map(uid_of).transpose()?,
        container: args.container.clone(),
        actions: args.actions.clone(),
        min_severity: args
            .severity
            .as_deref()
            .and_then(|name| SEVERITIES.into_iter().find(|s| severity_name(*s) == name)),
        detection: args.detection.clone(),
        limit: (args.limit > 0).then_some(args.limit),
    })
}

/// `--user`: a uid, or a user name of this host.
fn uid_of(user: &str) -> Result<i64, String> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(i64::from(uid));
    }
    match User::from_name(user) {
        Ok(Some(u)) => Ok(i64::from(u.uid.as_raw())),
        Ok(None) => Err(format!(
            "--user {user}: no such user on this host (the store keeps uids: give the number)"
        )),
        Err(e) => Err(format!("--user {user}: cannot look the user up: {e}")),
    }
}

/// User names by uid, looked up once each.
#[derive(Debug, Default)]
pub struct Users(HashMap<i64, Option<String>>);

impl Users {
    pub fn name(&mut self, uid: i64) -> Option<String> {
        self.0
            .entry(uid)
            .or_insert_with(|| {
                let raw = u32::try_from(uid).ok()?;
                User::from_uid(Uid::from_raw(raw))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
}

const TABLE: &[&str] = &[
    "time",
    "action",
    "severity",
    "pid",
    "comm",
    "user",
    "path",
    "bytes",
    "detection",
];

/// CSV is for programs: every indexed column, times to the nanosecond.
const CSV: &[&str] = &[
    "seq",
    "time",
    "action",
    "severity",
    "pid",
    "ppid",
    "uid",
    "user",
    "comm",
    "exe",
    "container",
    "path",
    "weight_set",
    "bytes",
    "detection",
];

/// RFC 3339 in UTC to the millisecond: enough for people, and narrower.
const RFC3339_MS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

fn time_ms(unix_ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(unix_ns.into())
        .ok()
        .and_then(|t| t.format(RFC3339_MS).ok())
        .unwrap_or_else(|| unix_ns.to_string())
}

/// A record's column headers in `format` (JSON has none).
pub fn headers(format: Format) -> &'static [&'static str] {
    match format {
        Format::Csv => CSV,
        Format::Table | Format::Json => TABLE,
    }
}

/// A record's cells under [`headers`]; a table shows `-` where the
/// record has no value, CSV an empty field.
pub fn cells(f: &Found, format: Format, users: &mut Users) -> Vec<String> {
    let none = if format == Format::Table { "-" } else { "" };
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| none.to_owned());
    let num = |v: Option<i64>| v.map_or_else(|| none.to_owned(), |n| n.to_string());
    let name = f.uid.and_then(|uid| users.name(uid));
    match format {
        Format::Csv => vec![
            f.seq.to_string(),
            format_unix_ns(f.time_ns.into()),
            f.action.clone(),
            f.severity.clone(),
            num(f.pid),
            num(f.ppid),
            num(f.uid),
            text(&name),
            text(&f.comm),
            text(&f.exe),
            text(&f.container),
            text(&f.path),
            text(&f.weight_set),
            num(f.bytes),
            text(&f.detection),
        ],
        Format::Table | Format::Json => vec![
            time_ms(f.time_ns),
            f.action.clone(),
            f.severity.clone(),
            num(f.pid),
            text(&f.comm),
            match (name, f.uid) {
                (Some(name), Some(uid)) => format!("{name}({uid})"),
                (None, uid) => num(uid),
                (Some(name), None) => name,
            },
            text(&f.path),
            num(f.bytes),
            text(&f.detection),
        ],
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<QueryArgs, String> {
        let argv = ["weightwarden", "query"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Query(q),
            }) => Ok(q),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    const NOW: i64 = 1_800_000_000_000_000_000;

    #[test]
    fn flags_become_a_filter() {
        let args = parse(&[
            "--since",
            "2h",
            "--until",
            "2026-05-01T09:30:00Z",
            "--path",
            "/models/llama/*",
            "--user",
            "65534",
            "--action",
            "read",
            "--action",
            "copy",
            "--severity",
            "medium",
            "--limit",
            "0",
        ])
        .expect("parse");
        let f = filter(&args, 1_777_635_000_000_000_000).expect("filter");
        assert_eq!(
            f.since_ns,
            Some(1_777_635_000_000_000_000 - 7_200_000_000_000)
        );
        assert_eq!(f.until_ns, Some(1_777_627_800_000_000_000));
        assert_eq!(f.path.as_deref(), Some("/models/llama/*"));
        assert_eq!(f.uid, Some(65534));
        assert_eq!(f.actions, ["read", "copy"]);
        assert_eq!(f.min_severity, Some(crate::event::Severity::Medium));
        assert_eq!(f.limit, None);
        let defaults = filter(&parse(&[]).expect("parse"), NOW).expect("filter");
        assert_eq!(
            defaults,
            Filter {
                limit: Some(1000),
                ..Filter::default()
            }
        );
        // root is on every host.
        let root = filter(&parse(&["--user", "root"]).expect("parse"), NOW).expect("root");
        assert_eq!(root.uid, Some(0));
    }

    #[test]
    fn bad_flags_are_named_with_what_they_accept() {
        let err = parse(&["--since", "bogus"]).expect_err("bogus");
        assert!(err.contains("--since") && err.contains("90m"), "{err}");
        let err = parse(&["--action", "reed"]).expect_err("action");
        assert!(err.contains("reed") && err.contains("read"), "{err}");
        let err = parse(&["--severity", "severe"]).expect_err("severity");
        assert!(err.contains("critical"), "{err}");
        let err = parse(&["--json", "--csv"]).expect_err("two formats");
        assert!(err.contains("--csv"), "{err}");
        let args = parse(&["--user", "no-such-user-here"]).expect("parse");
        let err = filter(&args, NOW).expect_err("user");
        assert!(
            err.contains("no-such-user-here") && err.contains("uid"),
            "{err}"
        );
        let args = parse(&["--since", "1h", "--until", "2h"]).expect("parse");
        let err = filter(&args, NOW).expect_err("inverted");
        assert!(err.contains("after --until"), "{err}");
    }

    #[test]
    fn a_record_has_its_cells_in_each_format() {
        let found = Found {
            seq: 7,
            time_ns: 1_777_627_800_123_456_789,
            action: "read".into(),
            severity: "info".into(),
            pid: Some(42),
            ppid: Some(1),
            uid: Some(0),
            comm: Some("cat".into()),
            path: Some("/models/a, b.safetensors".into()),
            bytes: Some(4096),
            ..Found::default()
        };
        let mut users = Users::default();
        assert_eq!(
            cells(&found, Format::Table, &mut users),
            [
                "2026-05-01T09:30:00.123Z",
                "read",
                "info",
                "42",
                "cat",
                "root(0)",
                "/models/a, b.safetensors",
                "4096",
                "-"
            ]
        );
        let csv = cells(&found, Format::Csv, &mut users);
        assert_eq!(csv.len(), CSV.len());
        assert_eq!(
            crate::cli::table::csv_line(&csv),
            "7,2026-05-01T09:30:00.123456789Z,read,info,42,1,0,root,cat,,,\
             \"/models/a, b.safetensors\",,4096,\n"
        );
    }
}
