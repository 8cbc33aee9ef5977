//! `cleanroom doctor`: which backends work here, why not, and what each enforces.

use std::process::ExitCode;

use cleanroom::bridge::wait;
use cleanroom::BackendReport;

use crate::cli::DoctorArgs;
use crate::output;

pub fn main(args: DoctorArgs) -> cleanroom::Result<ExitCode> {
    let image = match args.image {
        Some(i) => Some(i),
        None => cleanroom::Config::load_default()?.image.value,
    };
    let mut reports = wait(cleanroom::doctor(image.as_deref()))?;
    if args.probe {
        wait(probe_engines(&mut reports, image.as_deref()));
    }
    if args.json {
        output::json(&reports)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&reports);
    Ok(ExitCode::SUCCESS)
}

/// Runs `true` in a container on each available engine; a failure makes
/// the engine unavailable in the report, with the engine's fix as the hint.
async fn probe_engines(reports: &mut [BackendReport], image: Option<&str>) {
    let image = image.unwrap_or(cleanroom::DEFAULT_ENGINE_IMAGE);
    for r in reports.iter_mut().filter(|r| r.available) {
        let probe = match r.name.as_str() {
            "docker" => cleanroom::DockerBackend::new(image).probe_run().await,
            "podman" => cleanroom::PodmanBackend::new(image).probe_run().await,
            _ => continue,
        };
        if !probe.available {
            r.available = false;
            r.chosen_by_auto = false;
            r.reason = probe.reason;
            r.hint = probe.hint;
        }
    }
}

fn print_table(reports: &[BackendReport]) {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                if r.available { "yes" } else { "no" }.to_string(),
                if r.chosen_by_auto { "<- auto" } else { "" }.to_string(),
                r.reason.clone(),
            ]
        })
        .collect();
    output::table(&["BACKEND", "AVAILABLE", "AUTO", "WHY"], &rows);
    for r in reports {
        say!("\n{}:", r.name);
        if let Some(hint) = &r.hint {
            say!("  to enable: {hint}");
        }
        if !r.available {
            continue;
        }
        if !r.enforced.is_empty() {
            let names: Vec<&str> = r.enforced.iter().map(|c| c.describe()).collect();
            say!("  enforces: {}", names.join(", "));
        }
        for n in &r.not_enforced {
            say!("  cannot enforce {}: {}", n.constraint.describe(), n.reason);
        }
    }
}
