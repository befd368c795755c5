//! Running the real agent in a guest: the shell around a test body that
//! starts `weightwarden run`, waits until capture is live, stops it after
//! the body and sends back its records and log; and the host-side checks
//! every such run must pass.

use sensor::event::Event;
use serde_json::Value;

use super::VmRun;

/// Where the guest tests put the sensor.
pub const GUEST_BINARY: &str = "/usr/local/bin/weightwarden";

/// A guest script: runs `setup`, starts `weightwarden run RUN_ARGS` with
/// its records in `/tmp/events.jsonl` and its log in `/tmp/agent.log`,
/// waits for `sensor_start`, runs `body`, stops the agent with SIGTERM and
/// emits the sections `events` and `agent-log`. The script exits with the
/// agent's status (1 if it never started). `body` runs under `set -e`.
pub fn agent_script(setup: &str, run_args: &str, body: &str) -> String {
    format!(
        r#"set -e
{setup}
WEIGHTWARDEN_LOG=info weightwarden run {run_args} \
    --output jsonl:/tmp/events.jsonl 2> /tmp/agent.log &
agent=$!
tries=0
until grep -q '"sensor_start"' /tmp/events.jsonl 2> /dev/null; do
    tries=$((tries + 1))
    if [ $tries -gt 600 ] || ! kill -0 $agent 2> /dev/null; then
        echo "the sensor did not start"
        ww-emit agent-log /tmp/agent.log
        exit 1
    fi
    sleep 0.1
done
{body}
kill -TERM $agent
agent_status=0
wait $agent || agent_status=$?
ww-emit events /tmp/events.jsonl
ww-emit agent-log /tmp/agent.log
exit $agent_status
"#
    )
}

/// The records of an [`agent_script`] run, after checking that the agent
/// exited 0 with a log free of warnings and errors and a `sensor_stop`
/// whose loss and failure counters are all 0.
#[track_caller]
pub fn agent_records(run: &VmRun) -> Vec<Event> {
    agent_records_warning(run, &[])
}

/// [`agent_records`] for a run whose agent may warn, with lines containing
/// one of `expected` only.
#[track_caller]
pub fn agent_records_warning(run: &VmRun, expected: &[&str]) -> Vec<Event> {
    run.assert_success();
    let log = run.expect_section("agent-log");
    if !log.lines().any(|l| l.contains(" stopped ")) {
        run.fail(&format!("no `stopped` line:\n{log}"));
    }
    if log.lines().any(|l| {
        l.contains(" ERROR ") || (l.contains(" WARN ") && !expected.iter().any(|w| l.contains(w)))
    }) {
        run.fail(&format!("agent log:\n{log}"));
    }
    let lines: Vec<&str> = run
        .expect_section("events")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let stop: Value = lines
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| run.fail("no records"));
    if stop["action"] != "sensor_stop" {
        run.fail(&format!("the last record is not sensor_stop: {stop:#}"));
    }
    let problems = crate::counter_problems(&stop["sensor"]);
    if !problems.is_empty() {
        run.fail(&format!("{problems:?}"));
    }
    lines
        .iter()
        .map(|l| {
            sensor::output::encode::native::decode(l).unwrap_or_else(|e| {
                run.fail(&format!("undecodable record {l:?}: {}", sensor::Chain(&e)))
            })
        })
        .collect()
}
