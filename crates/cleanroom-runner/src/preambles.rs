//! The run preamble once per suite for each distinct spec: tests whose
//! specs are equal share one [`Prepared`] (validation, enforcement report,
//! strict check, warnings) instead of asking the backend again per test.

use std::sync::Mutex;

use cleanroom::{Backend, Prepared, Result, SandboxSpec, Warnings};

/// Distinct specs remembered per suite; later ones are prepared per test.
/// A linear search over a few equal specs is cheaper than hashing one.
const REMEMBERED: usize = 32;

/// The preambles a suite has run, by spec.
#[derive(Default)]
pub(crate) struct Preambles {
    done: Mutex<Vec<(SandboxSpec, Prepared)>>,
}

impl Preambles {
    /// `spec`'s preamble on `backend`: the one an earlier test with an
    /// equal spec had, else a fresh one (remembered when it passed; a
    /// refusal is asked again, so every test reports it).
    pub(crate) fn prepare(&self, backend: &dyn Backend, spec: &SandboxSpec) -> Result<Prepared> {
        if let Some((_, p)) = self.lock().iter().find(|(s, _)| s == spec) {
            return Ok(p.clone());
        }
        let prepared = backend.prepare(spec, None, Warnings::Caller)?;
        let mut done = self.lock();
        if done.len() < REMEMBERED {
            done.push((spec.clone(), prepared.clone()));
        }
        Ok(prepared)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(SandboxSpec, Prepared)>> {
        // Plain data: still usable after a panic elsewhere.
        self.done.lock().unwrap_or_else(|p| p.into_inner())
    }
}
