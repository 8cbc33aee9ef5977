//! `cleanroom config`: the effective settings and where each came from.

use std::process::ExitCode;

use crate::cli::ConfigArgs;
use crate::output;

pub fn main(args: ConfigArgs) -> cleanroom::Result<ExitCode> {
    let dir = match args.dir {
        Some(d) => d,
        None => super::current_dir()?,
    };
    let config = super::load_config(&args.sandbox.given, &dir)?;
    if args.json {
        output::json(&config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = config
        .rows()
        .into_iter()
        .map(|(k, v, o)| vec![k.to_string(), v, o])
        .collect();
    output::table(&["KEY", "VALUE", "FROM"], &rows);
    if config.files.is_empty() {
        say!(
            "\nno cleanroom.toml or Cargo.toml with a cleanroom table found from {}",
            dir.display()
        );
    } else {
        say!();
        for f in &config.files {
            say!("read {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
