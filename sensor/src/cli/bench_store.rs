//! `weightwarden bench-store` (hidden, for `cargo xtask bench`): fills a
//! new audit store with synthetic records through the real writer, as fast
//! as it takes them, and prints what it sustained as one JSON line.
//!
//! The records (`store/synthetic.rs`) look like a busy GPU host's week;
//! their times are spread evenly over `--days` days up to now, so that a
//! 24-hour window holds a day's share.

use std::{path::PathBuf, time::Instant};

use super::exit;
use crate::{
    Chain,
    output::encode::{Encoder, native},
    store::{StoreSettings, Writer, synthetic},
};

#[derive(Debug, clap::Args)]
pub struct BenchStoreArgs {
    /// The store to create (must not exist).
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    /// Records to write.
    #[arg(long, value_name = "N")]
    pub records: u64,
    /// Days the records' times span, ending now.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub days: u64,
}

pub fn execute(args: &BenchStoreArgs) -> u8 {
    if args.db.exists() {
        eprintln!(
            "weightwarden: {} exists; bench-store fills a new store",
            args.db.display()
        );
        return exit::USAGE;
    }
    let templates = match synthetic::templates() {
        Ok(t) => t,
        Err(err) => {
            eprintln!("weightwarden: bench-store template: {}", Chain(&err));
            return exit::FAILURE;
        }
    };
    let writer = match Writer::start(&StoreSettings::at(&args.db)) {
        Ok(w) => w,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            return exit::USAGE;
        }
    };
    let now = crate::enrich::clock::unix_now_ns();
    let span = i128::from(args.days.max(1)) * 86_400 * 1_000_000_000;
    let start = now - span;
    let step = span / i128::from(args.records.max(1));
    let mut encoder = native::Native;
    let mut buf = Vec::with_capacity(2048);
    let began = Instant::now();
    let mut writer = writer;
    for n in 0..args.records {
        let event = synthetic::event(&templates, n, start, step);
        buf.clear();
        if let Err(err) = encoder.encode(&event, &mut buf) {
            eprintln!("weightwarden: bench-store: {}", Chain(&err));
            return exit::FAILURE;
        }
        writer.submit_waiting(&event, &buf);
    }
    writer.finish();
    let seconds = began.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&args.db).map_or(0, |m| m.len());
    println!(
        "{}",
        serde_json::json!({
            "records": args.records,
            "seconds": seconds,
            "records_per_sec": args.records as f64 / seconds,
            "db_bytes": bytes,
            "lost": writer.lost(),
        })
    );
    exit::OK
}
