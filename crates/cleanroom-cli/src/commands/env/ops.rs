//! `cleanroom env ps|logs|exec|stop|restart`: one environment's services
//! by name.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use cleanroom::bridge::wait;
use cleanroom::{Backend, Cmd, ExecStdio, LogOptions, SandboxInfo};
use cleanroom_env::engine;
use cleanroom_env::EnvError;

use super::args::{
    EnvArgs, EnvCommand, EnvExecArgs, EnvLogsArgs, EnvPsArgs, EnvRestartArgs, EnvStopArgs,
};
use super::{backend_and_spec, env_name, load, report};

/// ANSI colours for service name prefixes, in turn.
const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];

pub fn env_main(args: EnvArgs) -> cleanroom::Result<ExitCode> {
    Ok(wait(async move {
        let r = match args.command {
            EnvCommand::Ps(a) => ps(a).await,
            EnvCommand::Logs(a) => logs(a).await,
            EnvCommand::Exec(a) => exec(a).await,
            EnvCommand::Stop(a) => stop(a).await,
            EnvCommand::Restart(a) => restart(a).await,
        };
        r.unwrap_or_else(report)
    }))
}

/// One `env ps` line.
fn ps_line(info: &SandboxInfo) -> String {
    format!(
        "  {:<16} {:<28} {:<14} {}",
        engine::service_of(info),
        info.name,
        info.state.to_string(),
        info.image
    )
}

async fn ps(args: EnvPsArgs) -> Result<ExitCode, EnvError> {
    let (backend, _) = backend_and_spec(&args.sandbox).await?;
    let list = engine::sandboxes(backend.as_ref(), args.project_name.as_deref(), args.all).await?;
    let mut groups: BTreeMap<String, Vec<SandboxInfo>> = BTreeMap::new();
    for info in list {
        let env = info
            .labels
            .get(cleanroom_env::plan::ENV_LABEL)
            .cloned()
            .unwrap_or_default();
        groups.entry(env).or_default().push(info);
    }
    if groups.is_empty() {
        eprintln!("no environments are up");
    }
    for (env, members) in groups {
        say!("{env} ({} sandboxes, {})", members.len(), backend.name());
        say!(
            "  {:<16} {:<28} {:<14} IMAGE",
            "SERVICE",
            "SANDBOX",
            "STATE"
        );
        for m in &members {
            say!("{}", ps_line(m));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `name | ` padded to `width`, coloured on a terminal.
pub fn prefix(service: &str, index: usize, width: usize, colour: bool) -> String {
    if colour {
        format!(
            "\x1b[{}m{service:<width$} |\x1b[0m ",
            COLOURS[index % COLOURS.len()]
        )
    } else {
        format!("{service:<width$} | ")
    }
}

/// Prints `sandbox`'s log, each line after `prefix`, following it with `follow`.
pub async fn follow(backend: Arc<dyn Backend>, sandbox: String, prefix: String, follow: bool) {
    let Ok(Some(handle)) = backend.attach(&sandbox).await else {
        return;
    };
    let (sink, mut rx) = cleanroom::output_channel(64);
    let printer = tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            pending.extend_from_slice(&chunk.bytes);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let mut line = prefix.as_bytes().to_vec();
                line.extend(pending.drain(..=pos));
                crate::output::print_bytes(&line);
            }
        }
        if !pending.is_empty() {
            let mut line = prefix.as_bytes().to_vec();
            line.extend(pending);
            line.push(b'\n');
            crate::output::print_bytes(&line);
        }
    });
    let _ = handle.logs(LogOptions { tail: None, follow }, sink).await;
    let _ = printer.await;
}

async fn logs(args: EnvLogsArgs) -> Result<ExitCode, EnvError> {
    let name = env_name(&args.files, &args.project_name)?;
    let (backend, _) = backend_and_spec(&args.sandbox).await?;
    let members: Vec<SandboxInfo> = engine::sandboxes(backend.as_ref(), Some(&name), true)
        .await?
        .into_iter()
        .filter(|s| engine::service_of(s) != cleanroom_env::plan::POD_SERVICE)
        .filter(|s| {
            args.services.is_empty() || args.services.iter().any(|n| n == engine::service_of(s))
        })
        .collect();
    for wanted in &args.services {
        if !members.iter().any(|m| engine::service_of(m) == wanted) {
            return Err(EnvError::Run(format!(
                "environment `{name}` has no service `{wanted}` running or stopped"
            )));
        }
    }
    let width = members
        .iter()
        .map(|m| engine::service_of(m).len())
        .max()
        .unwrap_or(0);
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut tasks = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let p = prefix(engine::service_of(m), i, width, colour);
        tasks.push(tokio::spawn(follow(
            backend.clone(),
            m.name.clone(),
            p,
            args.follow,
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn exec(args: EnvExecArgs) -> Result<ExitCode, EnvError> {
    let name = env_name(&args.env.files, &args.env.project_name)?;
    let (backend, _) = backend_and_spec(&args.sandbox).await?;
    let sandbox = cleanroom_env::plan::sandbox_name(&name, &args.service);
    let Some(handle) = backend.attach(&sandbox).await? else {
        return Err(EnvError::Run(format!("service `{}` of environment `{name}` is not running (no sandbox `{sandbox}`); `cleanroom up` starts it", args.service)));
    };
    let code = handle
        .exec_attached(
            Cmd::from(args.command.clone()),
            ExecStdio {
                stdin: args.interactive,
                tty: args.tty,
            },
        )
        .await?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

async fn stop(args: EnvStopArgs) -> Result<ExitCode, EnvError> {
    let name = env_name(&args.env.files, &args.env.project_name)?;
    let (backend, _) = backend_and_spec(&args.sandbox).await?;
    for s in engine::stop(backend.as_ref(), &name, &args.services).await? {
        eprintln!("stopped {s}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn restart(args: EnvRestartArgs) -> Result<ExitCode, EnvError> {
    let (backend, spec) = backend_and_spec(&args.sandbox).await?;
    let env = load(&args.env, spec.strict)?;
    let plan = cleanroom_env::plan(&env, &[], backend.as_ref(), &spec)?;
    engine::restart(backend.as_ref(), &plan, &args.service).await?;
    eprintln!("restarted {}", args.service);
    Ok(ExitCode::SUCCESS)
}
