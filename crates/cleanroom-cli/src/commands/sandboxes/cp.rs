//! `cleanroom cp SRC DST`: files and directories between the host and a
//! named sandbox, `NAME:/PATH` on exactly one side (as docker decides: the
//! part before the first `:` names a sandbox unless it holds a `/`).

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use cleanroom::bridge::wait;
use cleanroom::detached::validate_name;
use cleanroom::{Error, Result};

use crate::cli::CpArgs;

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Host(PathBuf),
    Sandbox { name: String, path: PathBuf },
}

pub fn main(args: CpArgs) -> Result<ExitCode> {
    let from = side(&args.source)?;
    let to = side(&args.destination)?;
    wait(async {
        match (from, to) {
            (Side::Host(host), Side::Sandbox { name, path }) => {
                let sandbox = super::find(&name, &args.lookup).await?;
                let path = into_directory(path, &args.destination, &host);
                sandbox.copy_in(&absolute(host)?, &path).await?;
            }
            (Side::Sandbox { name, path }, Side::Host(host)) => {
                let sandbox = super::find(&name, &args.lookup).await?;
                let mut host = absolute(host)?;
                if host.is_dir() {
                    if let Some(base) = path.file_name() {
                        host.push(base);
                    }
                }
                sandbox.copy_out(&path, &host).await?;
            }
            _ => {
                return Err(Error::Config {
                    origin: "cp".into(),
                    message: format!(
                        "`{}` to `{}`: exactly one side must name a sandbox, as NAME:/PATH",
                        args.source, args.destination
                    ),
                })
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn side(arg: &str) -> Result<Side> {
    match arg.split_once(':') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') => {
            validate_name(name)?;
            Ok(Side::Sandbox {
                name: name.to_string(),
                path: sandbox_path(arg, path)?,
            })
        }
        _ => Ok(Side::Host(PathBuf::from(arg))),
    }
}

/// A path inside a sandbox: absolute and without `..`, so that it cannot
/// name anything outside the sandbox's root.
fn sandbox_path(arg: &str, path: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    let inside = p.is_absolute()
        && p.components().all(|c| {
            matches!(
                c,
                Component::RootDir | Component::Normal(_) | Component::CurDir
            )
        })
        && p.file_name().is_some();
    if !inside {
        return Err(Error::Config {
            origin: "cp".into(),
            message: format!(
                "`{arg}`: the path inside the sandbox must be absolute, name a file or directory \
                 and hold no `..`: nothing outside the sandbox's root can be copied"
            ),
        });
    }
    Ok(p)
}

/// `NAME:/dir/` means into that directory, under the host path's own name.
fn into_directory(path: PathBuf, arg: &str, host: &Path) -> PathBuf {
    match host.file_name() {
        Some(base) if arg.ends_with('/') => path.join(base),
        _ => path,
    }
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p);
    }
    Ok(crate::commands::current_dir()?.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_side_names_a_sandbox() {
        assert_eq!(
            side("box:/tmp/f").unwrap(),
            Side::Sandbox {
                name: "box".into(),
                path: "/tmp/f".into()
            }
        );
        assert_eq!(side("./a:b").unwrap(), Side::Host("./a:b".into()));
        assert_eq!(side("plain").unwrap(), Side::Host("plain".into()));
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        for bad in [
            "box:../etc/passwd",
            "box:/tmp/../../etc",
            "box:rel",
            "box:/",
        ] {
            let e = side(bad).unwrap_err().to_string();
            assert!(e.contains("outside the sandbox's root"), "{bad}: {e}");
        }
        let e = side("bad name:/x").unwrap_err().to_string();
        assert!(e.contains("is not valid"), "{e}");
    }

    #[test]
    fn a_trailing_slash_copies_into_the_directory() {
        let p = into_directory("/tmp".into(), "box:/tmp/", Path::new("/h/f.txt"));
        assert_eq!(p, PathBuf::from("/tmp/f.txt"));
        let p = into_directory("/tmp/g".into(), "box:/tmp/g", Path::new("/h/f.txt"));
        assert_eq!(p, PathBuf::from("/tmp/g"));
    }
}
