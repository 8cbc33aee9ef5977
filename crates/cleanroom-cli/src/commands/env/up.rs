//! `cleanroom up`, `plan`, `down` and `convert`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cleanroom::bridge::wait;
use cleanroom::Backend;
use cleanroom_env::engine::{self, Progress};
use cleanroom_env::{EnvError, LoadOptions, Plan};
use tokio::signal::unix::{signal, SignalKind};

use super::args::{ConvertArgs, DownArgs, PlanArgs, UpArgs};
use super::{backend_and_spec, env_name, load, report};

/// How often a foreground `up` checks restart policies and new logs.
const WATCH: Duration = Duration::from_millis(500);

pub fn plan(args: PlanArgs) -> cleanroom::Result<ExitCode> {
    Ok(wait(async move {
        let run = async {
            let (backend, spec) = backend_and_spec(&args.sandbox).await?;
            let env = load(&args.env, spec.strict)?;
            let plan = cleanroom_env::plan(&env, &args.services, backend.as_ref(), &spec)?;
            crate::output::print_bytes(plan.render().as_bytes());
            Ok::<_, EnvError>(())
        };
        match run.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(e),
        }
    }))
}

pub fn convert(args: ConvertArgs) -> cleanroom::Result<ExitCode> {
    let options = LoadOptions {
        dir: super::super::current_dir()?,
        files: args.files.clone(),
        profiles: args.profiles.clone(),
        strict: args.strict,
        ..LoadOptions::default()
    };
    match cleanroom_env::load(&options) {
        Ok(env) => {
            for w in &env.warnings {
                eprintln!("{w}");
            }
            crate::output::print_bytes(cleanroom_env::convert::to_toml(&env).as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report(e)),
    }
}

pub fn down(args: DownArgs) -> cleanroom::Result<ExitCode> {
    Ok(wait(async move {
        let run = async {
            let name = env_name(&args.env.files, &args.env.project_name)?;
            let (backend, _) = backend_and_spec(&args.sandbox).await?;
            let removed = engine::down(
                backend,
                &name,
                args.volumes,
                Duration::from_secs(args.grace),
            )
            .await?;
            for r in &removed {
                eprintln!("removed {r}");
            }
            if removed.is_empty() {
                eprintln!("environment `{name}` has no sandboxes");
            }
            Ok::<_, EnvError>(())
        };
        match run.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(e),
        }
    }))
}

pub fn up(args: UpArgs) -> cleanroom::Result<ExitCode> {
    Ok(wait(async move {
        match up_async(args).await {
            Ok(code) => code,
            Err(e) => report(e),
        }
    }))
}

fn progress() -> Progress {
    Arc::new(|line: &str| eprintln!("cleanroom: {line}"))
}

async fn up_async(args: UpArgs) -> Result<ExitCode, EnvError> {
    let (backend, spec) = backend_and_spec(&args.sandbox).await?;
    let env = load(&args.env, spec.strict)?;
    let plan = cleanroom_env::plan(&env, &args.services, backend.as_ref(), &spec)?;
    for s in &plan.services {
        for w in s.sandbox.enforcement.warnings() {
            eprintln!("{}: {w}", s.service.name);
        }
    }
    let started = std::time::Instant::now();
    let progress = progress();
    tokio::select! {
        r = engine::up(backend.clone(), &plan, args.detach, progress.clone()) => r?,
        _ = interrupted() => {
            eprintln!("cleanroom: interrupted; removing environment `{}`", plan.env);
            engine::down(backend.clone(), &plan.env, false, engine::STOP_GRACE).await?;
            return Ok(ExitCode::from(130));
        }
    }
    eprintln!(
        "cleanroom: environment `{}` is up ({} services, {:.2}s)",
        plan.env,
        plan.services.len(),
        started.elapsed().as_secs_f64()
    );
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    foreground(backend, &plan, progress).await
}

/// Foreground `up`: every service's output with a coloured name prefix,
/// restart policies applied, until Ctrl-C, which stops the environment.
async fn foreground(
    backend: Arc<dyn Backend>,
    plan: &Plan,
    progress: Progress,
) -> Result<ExitCode, EnvError> {
    let colour = std::io::stdout().is_terminal();
    let width = plan
        .services
        .iter()
        .map(|s| s.service.name.len())
        .max()
        .unwrap_or(0);
    let mut followers: BTreeMap<String, (String, tokio::task::JoinHandle<()>)> = BTreeMap::new();
    let mut restarts = BTreeMap::new();
    let mut tick = tokio::time::interval(WATCH);
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                engine::apply_restart_policies(backend.as_ref(), plan, &mut restarts, &progress).await?;
                // (Re)follow each service's current sandbox.
                for info in engine::sandboxes(backend.as_ref(), Some(&plan.env), true).await? {
                    let service = engine::service_of(&info).to_string();
                    let Some(index) = plan.services.iter().position(|s| s.service.name == service) else { continue };
                    if followers.get(&service).is_some_and(|(id, _)| *id == info.id) {
                        continue;
                    }
                    let prefix = super::ops::prefix(&service, index, width, colour);
                    let task = tokio::spawn(super::ops::follow(backend.clone(), info.name.clone(), prefix, true));
                    if let Some((_, old)) = followers.insert(service, (info.id.clone(), task)) {
                        old.abort();
                    }
                }
            }
        }
    }
    for (_, (_, task)) in followers {
        task.abort();
    }
    eprintln!("cleanroom: stopping environment `{}`", plan.env);
    engine::stop(backend.as_ref(), &plan.env, &[]).await?;
    Ok(ExitCode::from(130))
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
