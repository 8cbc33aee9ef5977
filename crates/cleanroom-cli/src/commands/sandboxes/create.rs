//! `cleanroom create` and `cleanroom run -d`: a named sandbox that outlives
//! this process, idle or with a main command; prints its name.

use std::collections::BTreeMap;
use std::process::ExitCode;

use cleanroom::bridge::wait;
use cleanroom::detached::{generate_name, validate_name};
use cleanroom::{AutoBackend, Backend, Cmd, DetachOptions, Error, Result, Warnings};

use crate::cli::{CreateArgs, NameArgs, RunArgs, SpecArgs};

pub fn main(args: CreateArgs) -> Result<ExitCode> {
    wait(start(&args.spec, None, &args.named, args.quiet))
}

/// `run -d`: the command is the sandbox's main process.
pub fn run_detached(args: RunArgs) -> Result<ExitCode> {
    let main = Cmd::from(args.command.clone());
    wait(start(&args.spec, Some(main), &args.named, args.quiet))
}

async fn start(
    spec_args: &SpecArgs,
    main: Option<Cmd>,
    named: &NameArgs,
    quiet: bool,
) -> Result<ExitCode> {
    let name = named.name.clone().unwrap_or_else(generate_name);
    validate_name(&name)?;
    let labels = labels(&named.label)?;
    let cwd = crate::commands::current_dir()?;
    let config = crate::commands::load_config(&spec_args.sandbox.given, &cwd)?;
    let spec = crate::commands::run::spec_from(spec_args, config.spec()?, &cwd)?;
    let backend = AutoBackend::select(config.backend.value, config.image.value.as_deref()).await?;
    tracing::info!("backend {}: {}", backend.chosen(), backend.reason());
    cleanroom::named::check_name_free(&name, backend.name()).await?;
    let prepared = backend.prepare(&spec, main.as_ref(), Warnings::Caller)?;
    let warnings = prepared.warnings();
    let options = DetachOptions { name, labels };
    let sandbox = backend
        .create_detached_prepared(&spec, main, options, prepared)
        .await?;
    // After the create: a backend that refuses does so in one line.
    if !quiet {
        for w in &warnings {
            eprintln!("{w}");
        }
    }
    say!("{}", sandbox.info().name);
    Ok(ExitCode::SUCCESS)
}

/// `--label K=V` values.
fn labels(given: &[String]) -> Result<BTreeMap<String, String>> {
    given
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::Config {
                origin: "flag --label".into(),
                message: format!("`{pair}` is not KEY=VALUE"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_pairs() {
        let l = labels(&["a=1".into(), "b=".into()]).unwrap();
        assert_eq!(l.get("a").map(String::as_str), Some("1"));
        assert_eq!(l.get("b").map(String::as_str), Some(""));
        for bad in ["novalue", "=x"] {
            let e = labels(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains("is not KEY=VALUE"), "{e}");
        }
    }
}
