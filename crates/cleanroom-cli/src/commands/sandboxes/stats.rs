//! `cleanroom stats [--no-stream] [--json] [NAME...]`: CPU, memory and pids
//! of named sandboxes, read again every second until interrupted (once
//! with `--no-stream`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cleanroom::bridge::wait;
use cleanroom::{BackendChoice, Detached, Result, Stats};

use crate::cli::StatsArgs;
use crate::commands::images::human_size;
use crate::output;

pub fn main(args: StatsArgs) -> Result<ExitCode> {
    wait(async {
        let sandboxes = targets(&args).await?;
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        loop {
            let readings = read_all(&sandboxes).await?;
            if args.json {
                output::json(&readings)?;
            } else {
                if !args.no_stream && terminal {
                    // Each reading replaces the last, as `docker stats` does.
                    output::print_bytes(b"\x1b[2J\x1b[H");
                }
                say!("{}", table(&readings));
            }
            if args.no_stream || !output::is_open() {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// The sandboxes named, or every running one.
async fn targets(args: &StatsArgs) -> Result<Vec<Arc<dyn Detached>>> {
    if !args.names.is_empty() {
        let found = super::find_all(&args.names, &args.lookup).await?;
        return Ok(found.into_iter().map(Arc::from).collect());
    }
    let (running, _) = cleanroom::named::list(false, super::lookup_choice(&args.lookup)?).await?;
    let mut found = Vec::new();
    for info in running {
        let on = BackendChoice::parse(&info.backend, "ps")?;
        found.push(Arc::from(
            cleanroom::named::attach_on(&info.name, on).await?,
        ));
    }
    Ok(found)
}

/// One reading of each, taken concurrently (an engine takes a second per
/// sample), in the order given.
async fn read_all(sandboxes: &[Arc<dyn Detached>]) -> Result<Vec<Stats>> {
    let mut reads = tokio::task::JoinSet::new();
    for (i, s) in sandboxes.iter().enumerate() {
        let s = s.clone();
        reads.spawn(async move { (i, s.stats().await) });
    }
    let mut readings: Vec<(usize, Stats)> = Vec::with_capacity(sandboxes.len());
    while let Some(joined) = reads.join_next().await {
        let (i, read) =
            joined.map_err(|e| cleanroom::Error::backend("cli", format!("stats task: {e}")))?;
        readings.push((i, read?));
    }
    readings.sort_by_key(|(i, _)| *i);
    Ok(readings.into_iter().map(|(_, s)| s).collect())
}

fn table(readings: &[Stats]) -> String {
    let mut lines = vec![format!(
        "{:<24} {:>8} {:>24} {:>6}",
        "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"
    )];
    for s in readings {
        if let Some(why) = &s.unavailable {
            lines.push(format!("{:<24} not available: {why}", s.name));
            continue;
        }
        let cpu = s
            .cpu_percent
            .map_or_else(|| "-".to_string(), |c| format!("{c:.2}%"));
        let mem = format!(
            "{} / {}",
            s.memory_bytes.map_or_else(|| "-".to_string(), human_size),
            s.memory_limit
                .map_or_else(|| "no limit".to_string(), human_size)
        );
        let pids = s.pids.map_or_else(|| "-".to_string(), |p| p.to_string());
        lines.push(format!("{:<24} {cpu:>8} {mem:>24} {pids:>6}", s.name));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_numbers_say_why() {
        let t = table(&[
            Stats {
                name: "a".into(),
                cpu_percent: Some(1.5),
                memory_bytes: Some(1 << 20),
                memory_limit: None,
                pids: Some(2),
                unavailable: None,
            },
            Stats {
                name: "b".into(),
                unavailable: Some("no cgroup".into()),
                ..Stats::default()
            },
        ]);
        assert!(t.contains("1.50%") && t.contains("no limit"), "{t}");
        assert!(
            t.contains("b") && t.contains("not available: no cgroup"),
            "{t}"
        );
    }
}
