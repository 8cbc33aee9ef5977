//! `cleanroom images|pull|import|rmi`: the image store the native backend runs from.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cleanroom::images::{ImageInfo, Progress, Store};
use cleanroom::Result;

use crate::cli::{ImagesAction, ImagesArgs, ImportArgs, PullArgs, RmiArgs};
use crate::output;

pub fn list(args: ImagesArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    match args.action {
        Some(ImagesAction::Verify { repair, json }) => return verify(&store, repair, json),
        None => {}
    }
    let images = store.list()?;
    if args.json {
        output::json(&images)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = images.iter().map(row).collect();
    output::table(&["REFERENCE", "DIGEST", "SIZE", "CREATED"], &rows);
    for i in &images {
        if let Some(problem) = &i.problem {
            eprintln!("cleanroom: image {} is broken: {problem}", i.reference);
        }
    }
    if images.is_empty() {
        eprintln!(
            "the store at {} is empty; add an image with `cleanroom import SOURCE` or `cleanroom pull REF`",
            store.root().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn row(i: &ImageInfo) -> Vec<String> {
    let size = match i.problem {
        Some(_) => "BROKEN".to_string(),
        None => human_size(i.size),
    };
    vec![
        i.reference.clone(),
        i.digest.short().to_string(),
        size,
        i.created.clone(),
    ]
}

fn verify(store: &Store, repair: bool, json: bool) -> Result<ExitCode> {
    let report = store.verify(repair)?;
    if json {
        output::json(&report)?;
    } else {
        say!("{} blob(s) checked", report.blobs_checked);
        for d in &report.corrupt {
            say!("corrupt blob {d}");
        }
        for (reference, d) in &report.broken_images {
            say!("image {reference} needs missing or corrupt blob {d}");
        }
        for r in &report.refs_removed {
            say!("dropped the tag {r}: its image cannot be repaired from the store; re-import it (`cleanroom import SOURCE --tag {r}`) or pull it");
        }
        if report.blobs_removed > 0 {
            say!("deleted {} corrupt blob(s)", report.blobs_removed);
        }
        for t in &report.trees_changed {
            say!(
                "unpacked tree {} changed since it was unpacked",
                t.display()
            );
        }
        for t in &report.trees_removed {
            say!(
                "deleted {} (rebuilt from the verified blobs when next used)",
                t.display()
            );
        }
        for t in &report.trees_in_use {
            say!(
                "left {} alone: a running sandbox uses it; repair again when it has finished",
                t.display()
            );
        }
        if !report.is_ok() && !repair {
            say!("run `cleanroom images verify --repair` to drop what is broken, then re-import");
        }
    }
    Ok(if report.is_ok() || repair {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let bar = ProgressLine::new();
    let info = store.import_with_progress(&args.source, args.tag.as_deref(), &|p| bar.show(p))?;
    bar.finish();
    say!("imported {} ({})", info.reference, info.digest);
    Ok(ExitCode::SUCCESS)
}

pub fn pull(args: PullArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let bar = ProgressLine::new();
    let info = store.pull(&args.reference, &|p| bar.show(p))?;
    bar.finish();
    say!("pulled {} ({})", info.reference, info.digest);
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(args: RmiArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    for reference in &args.references {
        let report = store.remove(reference)?;
        for r in &report.untagged {
            say!("untagged {r}");
        }
        say!(
            "freed {} ({} blob(s), {} unpacked layer(s))",
            human_size(report.gc.bytes_freed),
            report.gc.blobs_removed,
            report.gc.layers_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One status line on stderr, redrawn at most ten times a second, only on a terminal.
struct ProgressLine {
    tty: bool,
    last: Mutex<Option<Instant>>,
}

impl ProgressLine {
    fn new() -> Self {
        ProgressLine {
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }

    fn show(&self, p: &Progress) {
        if !self.tty {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        *last = Some(Instant::now());
        let amount = match p.total {
            Some(t) if t > 0 => format!(
                "{} / {} ({}%)",
                human_size(p.done),
                human_size(t),
                p.done * 100 / t
            ),
            _ => human_size(p.done),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}: {amount}", p.item);
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(200 << 20), "200.0 MiB");
    }
}
