//! The commands for named sandboxes that outlive the CLI, as docker spells
//! them: `create` and `run -d` ([`create`]), [`exec`], [`ps`], `logs`,
//! `stop` and `rm` ([`manage`]), [`cp`] and [`stats`]. A name is looked up
//! on native, then docker, then podman (`--backend` picks one).

pub mod cp;
pub mod create;
pub mod exec;
pub mod manage;
pub mod ps;
pub mod stats;

use cleanroom::{BackendChoice, Detached, Result};

use crate::sandbox_args::LookupArgs;

/// The backends `--backend` lets a name be looked up on.
fn lookup_choice(args: &LookupArgs) -> Result<BackendChoice> {
    match &args.backend {
        None => Ok(BackendChoice::Auto),
        Some(name) => BackendChoice::parse(name, "flag --backend"),
    }
}

/// The sandbox called `name`, wherever it is.
async fn find(name: &str, args: &LookupArgs) -> Result<Box<dyn Detached>> {
    cleanroom::named::attach_on(name, lookup_choice(args)?).await
}

/// Every sandbox of `names`, or the error of the first that is not there:
/// a command on several names changes nothing unless it finds them all.
async fn find_all(names: &[String], args: &LookupArgs) -> Result<Vec<Box<dyn Detached>>> {
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        found.push(find(name, args).await?);
    }
    Ok(found)
}
