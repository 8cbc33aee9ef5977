//! The run preamble — validate, enforcement report, strict check, warnings —
//! done once per run or new sandbox, before a backend starts anything.
//!
//! [`Backend::run_streaming`](crate::Backend::run_streaming) and
//! [`Backend::create`](crate::Backend::create) go through
//! [`Backend::prepare`](crate::Backend::prepare), which calls `prepare`
//! here; a backend implements only what comes after, taking the
//! [`Prepared`] proof. Only this module makes a [`Prepared`], so no backend
//! and no caller can start a sandbox that skipped the preamble.

use crate::cmd::Cmd;
use crate::enforcement::Enforcement;
use crate::error::Result;
use crate::spec::SandboxSpec;

/// A spec (and command) that passed the preamble: valid, not refused by
/// strict mode, its warnings reported as asked. Carries the enforcement
/// report the run's result and the sandbox report.
#[derive(Clone, Debug)]
pub struct Prepared {
    enforcement: Enforcement,
}

impl Prepared {
    /// What the backend enforces for the spec.
    pub fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    /// The report, for the result or the sandbox to keep.
    pub fn into_enforcement(self) -> Enforcement {
        self.enforcement
    }

    /// One `WARN: ...` line per requested constraint that is not enforced
    /// (or whose enforcement is unknown).
    pub fn warnings(&self) -> Vec<String> {
        self.enforcement.warnings()
    }
}

/// Where the preamble sends a run's warnings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Warnings {
    /// To the log (`tracing`, level warn): what library runs do.
    #[default]
    Log,
    /// Nowhere: the caller shows [`Prepared::warnings`] its own way (the
    /// CLI prints them on stderr unless `--quiet`).
    Caller,
}

/// The preamble: validates `spec` and `cmd`, asks `enforcement` for the
/// report, refuses in strict mode, and reports the warnings to `warnings`.
pub(crate) fn prepare(
    spec: &SandboxSpec,
    cmd: Option<&Cmd>,
    enforcement: impl FnOnce(&SandboxSpec) -> Enforcement,
    warnings: Warnings,
) -> Result<Prepared> {
    spec.validate()?;
    if let Some(c) = cmd {
        validate_cmd(spec, c)?;
    }
    let enforcement = enforcement(spec);
    enforcement.check_strict(spec)?;
    if warnings == Warnings::Log {
        for w in enforcement.warnings() {
            tracing::warn!("{w}");
        }
    }
    Ok(Prepared { enforcement })
}

/// The preamble's check of a command, for a caller that prepared a spec
/// once (with no command) and then runs several commands on that
/// [`Prepared`] through [`Backend::run_prepared`](crate::Backend::run_prepared).
pub fn validate_cmd(spec: &SandboxSpec, cmd: &Cmd) -> Result<()> {
    // An empty command on an image is the image's own (Entrypoint + Cmd):
    // the backend resolves it, and says so when the image has none.
    let image_default =
        cmd.program.is_empty() && matches!(spec.rootfs, crate::spec::RootFs::Image(_));
    if image_default {
        return Ok(());
    }
    cmd.validate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforcement::Constraint;

    fn nothing_enforced(spec: &SandboxSpec) -> Enforcement {
        let mut e = Enforcement::new("test");
        for c in Constraint::requested_by(spec) {
            e.not_enforced(c, "a test backend enforces nothing");
        }
        e
    }

    #[test]
    fn invalid_input_is_refused_before_the_report_is_asked_for() {
        let bad_spec = SandboxSpec {
            workdir: "relative".into(),
            ..SandboxSpec::default()
        };
        let asked = std::cell::Cell::new(false);
        let report = |s: &SandboxSpec| {
            asked.set(true);
            nothing_enforced(s)
        };
        assert!(prepare(&bad_spec, None, report, Warnings::Log).is_err());
        let empty = Cmd::from(Vec::<String>::new());
        let r = prepare(
            &SandboxSpec::default(),
            Some(&empty),
            nothing_enforced,
            Warnings::Log,
        );
        assert!(r.is_err());
        assert!(!asked.get());
    }

    #[test]
    fn strict_mode_refuses_what_is_not_enforced() {
        let strict = SandboxSpec {
            strict: true,
            ..SandboxSpec::default()
        };
        let err = prepare(&strict, None, nothing_enforced, Warnings::Caller).unwrap_err();
        assert!(matches!(err, crate::Error::NotEnforceable { .. }), "{err}");
        let p = prepare(
            &SandboxSpec::default(),
            None,
            nothing_enforced,
            Warnings::Caller,
        )
        .expect("not strict: it runs, with warnings");
        assert!(!p.warnings().is_empty());
        assert_eq!(p.warnings(), p.clone().into_enforcement().warnings());
    }
}
