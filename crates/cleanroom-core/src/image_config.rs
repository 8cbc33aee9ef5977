//! An image's own configuration (`Env`, `WorkingDir`, `User`,
//! `Entrypoint`, `Cmd`) and the one rule by which every backend applies it
//! under the spec's own settings, as Docker does:
//!
//! - **Env**: the fixed base, then the image's `Env`, then the spec's, then
//!   the command's. An image's `PATH` (or `HOME`) replaces the base one
//!   unless the spec sets it.
//! - **User**: the spec's user, unless it is the contract's default
//!   1000:1000 and the image names a `User`; then the image's. A numeric
//!   `UID` means `UID:UID`, as everywhere in Cleanroom; a name is looked up
//!   in the image's `/etc/passwd` and `/etc/group` (by the engine itself on
//!   docker and podman).
//! - **Working directory**: the spec's `workdir` (default `/workdir`) is
//!   always a fresh writable tmpfs and `HOME`. When the spec leaves it at the
//!   default and the image has a `WorkingDir`, commands start there instead:
//!   the image's own directory with the image's files, writable only when
//!   the root is (as under `docker run --read-only`). A command's own
//!   directory wins over both.
//! - **Entrypoint/Cmd**: a one-shot run and a sandbox's main command run
//!   `Entrypoint` followed by the command given, which replaces `Cmd` (as
//!   `docker run IMAGE CMD...`); a command with an empty program runs
//!   `Entrypoint` + `Cmd` (`cleanroom run --image X` with no command). An
//!   exec into a running sandbox runs its command as given (as `docker exec`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;
use crate::error::{Error, Result};
use crate::spec::{SandboxSpec, User, DEFAULT_WORKDIR};

/// The parts of an image config a backend honours when running it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Env` as `KEY=VALUE` strings, in image order.
    pub env: Vec<String>,
    /// `WorkingDir`, if set and non-empty.
    pub working_dir: Option<String>,
    /// `User` (`name`, `uid`, `uid:gid`, `name:group`), if set and non-empty.
    pub user: Option<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
}

/// An image's `/etc/passwd` and `/etc/group`, for resolving a named `User`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    pub passwd: String,
    pub group: String,
}

/// What a run of an image really gets: [`ImageConfig::apply`]'s result.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRun {
    /// The spec with the image's `Env` under its own and the image's user
    /// where the spec leaves the default.
    pub spec: SandboxSpec,
    /// Where commands start unless they name a directory.
    pub start_dir: Option<PathBuf>,
    /// The image's `User` as written, when it applies but is a name this
    /// side could not look up (an engine resolves it itself).
    pub user_name: Option<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

impl ImageConfig {
    /// `Env` as a map; later duplicates win, as in Docker.
    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// The argv to run, Docker style: `Entrypoint` followed by the caller's
    /// command if it gave one, else by `Cmd`.
    pub fn argv(&self, command: &[String]) -> Vec<String> {
        let tail = if command.is_empty() {
            &self.cmd
        } else {
            command
        };
        self.entrypoint.iter().chain(tail).cloned().collect()
    }

    /// This config under `spec`, by the rule of this module. `accounts`
    /// resolves a named `User`; without them a name is left to the engine
    /// ([`ImageRun::user_name`]).
    pub fn apply(&self, spec: &SandboxSpec, accounts: Option<&Accounts>) -> Result<ImageRun> {
        let mut out = spec.clone();
        let mut env = self.env_map();
        env.retain(|k, _| crate::spec::validate_env_key(k).is_ok());
        env.extend(spec.env.clone());
        out.env = env;
        let mut user_name = None;
        if spec.user == User::DEFAULT {
            if let Some(u) = &self.user {
                match (u.parse::<User>(), accounts) {
                    (Ok(numeric), _) => out.user = numeric,
                    (Err(_), Some(acc)) => out.user = resolve_user(u, acc)?,
                    (Err(_), None) => user_name = Some(u.clone()),
                }
            }
        }
        let start_dir = match &self.working_dir {
            Some(dir) if spec.workdir == Path::new(DEFAULT_WORKDIR) => {
                Some(Path::new("/").join(dir))
            }
            _ => None,
        };
        Ok(ImageRun {
            spec: out,
            start_dir,
            user_name,
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
        })
    }
}

impl ImageRun {
    /// A run of something that is not an image (or has no config): `spec`
    /// as it is.
    pub fn plain(spec: &SandboxSpec) -> ImageRun {
        ImageRun {
            spec: spec.clone(),
            start_dir: None,
            user_name: None,
            entrypoint: Vec::new(),
            cmd: Vec::new(),
        }
    }

    /// `cmd` as a one-shot run or a sandbox's main command executes it:
    /// `Entrypoint` first, the image's `Cmd` when `cmd` has no program.
    pub fn main_command(&self, mut cmd: Cmd) -> Result<Cmd> {
        let given: Vec<String> = if cmd.program.is_empty() {
            Vec::new()
        } else {
            cmd.argv()
        };
        let tail = if given.is_empty() { &self.cmd } else { &given };
        let mut argv = self.entrypoint.iter().chain(tail).cloned();
        let Some(program) = argv.next() else {
            return Err(Error::InvalidSpec(
                "empty command: give a program to run, for example `-- echo hello` (only an \
                 image with an Entrypoint or Cmd runs without one)"
                    .into(),
            ));
        };
        cmd.program = program;
        cmd.args = argv.collect();
        Ok(self.exec_command(cmd))
    }

    /// `cmd` as an exec into a running sandbox executes it: as given, in
    /// the image's working directory unless it names one.
    pub fn exec_command(&self, cmd: Cmd) -> Cmd {
        starting_in(cmd, self.start_dir.as_deref())
    }
}

/// `cmd`, starting in `dir` unless it names a directory of its own.
pub fn starting_in(mut cmd: Cmd, dir: Option<&Path>) -> Cmd {
    if cmd.workdir.is_none() {
        cmd.workdir = dir.map(Path::to_path_buf);
    }
    cmd
}

/// A `User` (`name`, `uid`, `uid:gid`, `name:group`, `uid:group`, ...)
/// as numbers, looked up in an image's accounts. A bare name takes the
/// user's primary group from `/etc/passwd`.
pub fn resolve_user(user: &str, accounts: &Accounts) -> Result<User> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let missing = |what: &str, name: &str, file: &str| {
        Error::InvalidSpec(format!(
            "the image's User `{user}`: {what} `{name}` is not in the image's {file}; \
             set the user as UID:GID (--user)"
        ))
    };
    // passwd: name:x:uid:gid:...; group: name:x:gid:...
    let field = |text: &str, name: &str, idx: usize| -> Option<u32> {
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
            .and_then(|f| f.get(idx).and_then(|n| n.parse().ok()))
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => (uid, None),
        Err(_) => (
            field(&accounts.passwd, u, 2).ok_or_else(|| missing("user", u, "/etc/passwd"))?,
            field(&accounts.passwd, u, 3),
        ),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                field(&accounts.group, g, 2).ok_or_else(|| missing("group", g, "/etc/group"))?
            }
        },
        None => primary.unwrap_or(uid),
    };
    Ok(User { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ImageConfig {
        ImageConfig {
            env: vec!["PATH=/image/bin".into(), "FOO=yes".into()],
            working_dir: Some("/data".into()),
            user: Some("4242:4343".into()),
            entrypoint: vec!["env".into(), "E=1".into()],
            cmd: vec!["sh".into(), "-c".into(), "echo default".into()],
        }
    }

    #[test]
    fn the_spec_wins_over_the_image_and_the_image_over_the_defaults() {
        let run = config().apply(&SandboxSpec::default(), None).unwrap();
        let env = run.spec.environment(&BTreeMap::new());
        assert_eq!(env["PATH"], "/image/bin");
        assert_eq!(env["FOO"], "yes");
        assert_eq!(env["HOME"], "/workdir");
        assert_eq!(
            run.spec.user,
            User {
                uid: 4242,
                gid: 4343
            }
        );
        assert_eq!(run.start_dir.as_deref(), Some(Path::new("/data")));

        let mut spec = SandboxSpec {
            user: User { uid: 7, gid: 8 },
            workdir: "/elsewhere".into(),
            ..SandboxSpec::default()
        };
        spec.env.insert("FOO".into(), "no".into());
        let run = config().apply(&spec, None).unwrap();
        assert_eq!(run.spec.env["FOO"], "no");
        assert_eq!(run.spec.user, User { uid: 7, gid: 8 });
        assert_eq!(run.start_dir, None);
    }

    #[test]
    fn commands_keep_the_entrypoint_and_replace_cmd() {
        let run = config().apply(&SandboxSpec::default(), None).unwrap();
        let c = run.main_command(Cmd::default()).unwrap();
        assert_eq!(c.argv(), ["env", "E=1", "sh", "-c", "echo default"]);
        assert_eq!(c.workdir.as_deref(), Some(Path::new("/data")));
        let c = run.main_command(Cmd::new("pwd").workdir("/tmp")).unwrap();
        assert_eq!(c.argv(), ["env", "E=1", "pwd"]);
        assert_eq!(c.workdir.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(run.exec_command(Cmd::new("pwd")).argv(), ["pwd"]);
        let none = ImageRun::plain(&SandboxSpec::default());
        assert!(none.main_command(Cmd::default()).is_err());
    }

    #[test]
    fn named_users_are_looked_up_in_the_image() {
        let acc = Accounts {
            passwd: "root:x:0:0::/root:/bin/sh\napp:x:999:998::/app:/bin/sh\n".into(),
            group: "root:x:0:\nstaff:x:50:\n".into(),
        };
        assert_eq!(
            resolve_user("app", &acc).unwrap(),
            User { uid: 999, gid: 998 }
        );
        assert_eq!(
            resolve_user("app:staff", &acc).unwrap(),
            User { uid: 999, gid: 50 }
        );
        assert_eq!(
            resolve_user("5:staff", &acc).unwrap(),
            User { uid: 5, gid: 50 }
        );
        let err = resolve_user("nobody", &acc).unwrap_err().to_string();
        assert!(
            err.contains("`nobody`") && err.contains("/etc/passwd"),
            "{err}"
        );
        let img = ImageConfig {
            user: Some("app".into()),
            ..ImageConfig::default()
        };
        let run = img.apply(&SandboxSpec::default(), None).unwrap();
        assert_eq!(run.user_name.as_deref(), Some("app"));
        let run = img.apply(&SandboxSpec::default(), Some(&acc)).unwrap();
        assert_eq!(run.spec.user, User { uid: 999, gid: 998 });
    }
}
