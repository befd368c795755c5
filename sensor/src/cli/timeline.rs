//! `weightwarden timeline`: one process tree's records in time order
//! (docs/store.md, Querying): `store::timeline` finds the tree, `query`'s
//! columns print each record, after its process's relation to the root.

use super::{
    args::TimelineArgs,
    exit,
    query::{Users, cells, headers},
    table::{Failure, Listing},
    when,
};
use crate::{
    enrich::clock::format_unix_ns,
    store::timeline::{self, Process, Root, Window},
};

pub fn execute(args: &TimelineArgs) -> u8 {
    let check = || {
        let (since_ns, until_ns) =
            when::window(args.window.since, args.window.until, when::now_ns())?;
        let root = match (args.pid, &args.container) {
            (Some(pid), _) => Root::Pid(i64::from(pid)),
            (None, Some(id)) => Root::Container(id.clone()),
            (None, None) => return Err("give --pid PID or --container ID".to_owned()),
        };
        Ok((Window { since_ns, until_ns }, root))
    };
    let ((window, root), db, conn) = match args.store.open_read(check) {
        Ok(opened) => opened,
        Err(status) => return status,
    };
    let found = timeline::tree(&conn, &db, &root, window).and_then(|tree| match tree {
        Some(tree) => timeline::records(&conn, &db, &tree, window).map(|r| Some((tree, r))),
        None => Ok(None),
    });
    let (tree, records) = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            eprintln!("weightwarden: {}{}", nothing(&root), within(window));
            return exit::OK;
        }
        Err(err) => return Failure::Store(err).status(),
    };
    if let Root::Pid(pid) = root
        && let Some(latest) = tree.members.first().filter(|_| !tree.earlier.is_empty())
    {
        eprintln!(
            "weightwarden: pid {pid} was used by {} processes in the store; this is the latest, \
             started {} (earlier ones started {}; --until picks one)",
            tree.earlier.len() + 1,
            started(&latest.process),
            tree.earlier
                .iter()
                .map(started)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let format = args.format.format();
    let mut head = vec!["relation", "depth"];
    head.extend(headers(format));
    let mut users = Users::default();
    let listed = Listing::start(format, &head)
        .map_err(Failure::from)
        .and_then(|mut listing| {
            for (i, found) in &records {
                let m = &tree.members[*i];
                listing.push(&found.record, || {
                    let mut row = vec![m.relation.name().to_owned(), m.depth.to_string()];
                    row.extend(cells(found, format, &mut users));
                    row
                })?;
            }
            Ok(listing.finish()?)
        });
    match listed {
        Ok(_) => exit::OK,
        Err(failure) => failure.status(),
    }
}

/// No process of `root`, said.
fn nothing(root: &Root) -> String {
    match root {
        Root::Pid(pid) => format!("pid {pid} has no records in the store"),
        Root::Container(id) => {
            format!("no process of a container whose id starts with {id} has records in the store")
        }
    }
}

fn within(window: Window) -> String {
    match (window.since_ns, window.until_ns) {
        (None, None) => String::new(),
        (since, until) => format!(
            " from {} to {}",
            since.map_or_else(|| "the start".into(), |t| format_unix_ns(t.into())),
            until.map_or_else(|| "now".into(), |t| format_unix_ns(t.into()))
        ),
    }
}

/// When a process started, as its records say.
fn started(p: &Process) -> String {
    p.start.map_or_else(
        || "at an unknown time".to_owned(),
        |(lo, _)| format_unix_ns(lo.into()),
    )
}
