//! Exec into a named sandbox (`cleanroom exec NAME -- true` as a whole
//! process, and as a library call) beside its anchors, contenders taking
//! turns round by round: a bubblewrap one-shot and `docker exec C true`
//! for native; `docker exec` / `podman exec` into the same container for
//! the engines.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use cleanroom::detached::generate_name;
use cleanroom::{
    backend_for, Backend, BackendChoice, Cmd, DetachOptions, Detached, Error, Result, RootFs,
    SandboxSpec,
};

use super::anchors::{bwrap_command, which};
use super::measure::{median, ms, time_once};
use super::{with_anchor, Kind, Row};

/// A process to time, by name.
type Maker<'a> = (
    String,
    Box<dyn Fn() -> std::result::Result<Command, String> + Send + Sync + 'a>,
);

/// The rows for `choice`, whose sandboxes run `spec`; `image` is what an
/// engine anchor runs. A contender that cannot run here is left out, with
/// the reason on stderr.
pub(super) async fn rows(
    choice: BackendChoice,
    backend: &Arc<dyn Backend>,
    spec: &SandboxSpec,
    image: &str,
    exe: &Path,
    rootfs: Option<&Path>,
    runs: usize,
) -> Result<Vec<Row>> {
    let ours = named(backend.as_ref(), spec).await?;
    let name = ours.info().name.clone();
    // The engine container `docker exec` runs in: for an engine backend the
    // sandbox's own; for native, a named docker sandbox made for it.
    let docker_box = match choice {
        BackendChoice::Docker | BackendChoice::Podman => None,
        _ => {
            let docker = backend_for(BackendChoice::Docker, Some(image))?;
            let spec = SandboxSpec::with_rootfs(RootFs::Image(image.to_string()));
            match named(docker.as_ref(), &spec).await {
                Ok(b) => Some(b),
                Err(e) => {
                    eprintln!("`docker exec` not measured: {e}");
                    None
                }
            }
        }
    };
    let engine_cli = match choice {
        BackendChoice::Podman => "podman",
        _ => "docker",
    };
    // The engine's id for it: `docker exec ID` needs no name lookup.
    let container = match &docker_box {
        Some(b) => b.info().id.clone(),
        None => ours.info().id.clone(),
    };
    let measured = measure(
        choice,
        ours.as_ref(),
        &name,
        exe,
        rootfs,
        engine_cli,
        &container,
        docker_box.is_some() || matches!(choice, BackendChoice::Docker | BackendChoice::Podman),
        runs,
    )
    .await;
    let _ = ours.remove(true).await;
    if let Some(b) = docker_box {
        let _ = b.remove(true).await;
    }
    measured
}

async fn named(backend: &dyn Backend, spec: &SandboxSpec) -> Result<Box<dyn Detached>> {
    let options = DetachOptions {
        name: generate_name(),
        ..DetachOptions::default()
    };
    backend.create_detached(spec, None, options).await
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    choice: BackendChoice,
    ours: &dyn Detached,
    name: &str,
    exe: &Path,
    rootfs: Option<&Path>,
    engine_cli: &str,
    container: &str,
    with_engine_exec: bool,
    runs: usize,
) -> Result<Vec<Row>> {
    let bwrap = which("bwrap");
    let engine_exec = format!("{engine_cli} exec");
    let mut makers: Vec<Maker<'_>> = vec![(
        "cleanroom exec".into(),
        Box::new(|| {
            let mut c = Command::new(exe);
            c.args(["exec", name, "--", "true"]);
            Ok(c)
        }),
    )];
    if let Some(dir) = rootfs {
        makers.push((
            "bwrap --unshare-all".into(),
            Box::new(move || bwrap_command(bwrap.as_deref(), dir)),
        ));
    }
    if with_engine_exec {
        makers.push((
            engine_exec.clone(),
            Box::new(move || {
                let bin =
                    which(engine_cli).ok_or(format!("the {engine_cli} CLI is not installed"))?;
                let mut c = Command::new(bin);
                c.args(["exec", container, "true"]);
                Ok(c)
            }),
        ));
    }
    // One unmeasured round, then A B A B: the library exec, then each process.
    let mut library = Vec::with_capacity(runs);
    let mut times: Vec<std::result::Result<Vec<f64>, String>> =
        makers.iter().map(|_| Ok(Vec::new())).collect();
    for round in 0..=runs {
        let t = Instant::now();
        let r = ours.exec(Cmd::new("true"), None).await?;
        let took = ms(t.elapsed());
        if !r.success() {
            return Err(Error::backend(
                choice.as_str(),
                format!(
                    "exec `true` failed during the benchmark: {}",
                    r.status_line()
                ),
            ));
        }
        if round > 0 {
            library.push(took);
        }
        for ((_, make), slot) in makers.iter().zip(times.iter_mut()) {
            let Ok(list) = slot else { continue };
            match make().and_then(|mut c| time_once(&mut c).map(|(ms, _pid)| ms)) {
                Ok(took) if round > 0 => list.push(took),
                Ok(_) => {}
                Err(e) => *slot = Err(e),
            }
        }
    }
    let medians: Vec<(String, std::result::Result<f64, String>)> = makers
        .iter()
        .map(|(n, _)| n.clone())
        .zip(times.into_iter().map(|t| t.map(median)))
        .collect();
    let anchor = |which: &str| {
        medians
            .iter()
            .find(|(n, _)| n == which)
            .and_then(|(n, m)| match m {
                Ok(m) => Some((n.clone(), *m)),
                Err(e) => {
                    eprintln!("{n} not measured: {e}");
                    None
                }
            })
    };
    let process = medians[0]
        .1
        .clone()
        .map_err(|e| Error::backend("bench", format!("`cleanroom exec` failed: {e}")))?;
    let what = "exec `true` into a named sandbox (`cleanroom exec` process)";
    let mut rows = Vec::new();
    if choice == BackendChoice::Native {
        rows.push(with_anchor(
            what,
            Kind::Process,
            process,
            anchor("bwrap --unshare-all").as_ref(),
            Some("ratio <= 1.0"),
        ));
        rows.push(with_anchor(
            what,
            Kind::Process,
            process,
            anchor(&engine_exec).as_ref(),
            Some("ratio <= 0.05"),
        ));
    } else {
        rows.push(with_anchor(
            what,
            Kind::Process,
            process,
            anchor(&engine_exec).as_ref(),
            Some("ratio <= 1.0"),
        ));
        rows.push(with_anchor(
            "exec `true` into a named sandbox (library call)",
            Kind::Library,
            median(library),
            anchor(&engine_exec).as_ref(),
            Some("ratio <= 1.0"),
        ));
    }
    Ok(rows)
}
