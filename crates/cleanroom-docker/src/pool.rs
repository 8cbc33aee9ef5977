//! The warm pool: started, never-used containers kept ready per spec so a
//! one-shot run costs an exec instead of a container create and start.
//!
//! A container leaves the pool for exactly one run and is removed after it;
//! nothing a command did can reach another run. The pool refills in the
//! background after each take.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use cleanroom_core::{Enforcement, Prepared, Result, SandboxSpec};

use crate::backend::Shared;
use crate::endpoint::Endpoint;
use crate::sandbox::Container;

type Ready = (Container, Enforcement);

pub(crate) struct WarmPool {
    size: usize,
    idle: Mutex<HashMap<String, Vec<Ready>>>,
    filling: Mutex<HashSet<String>>,
}

impl WarmPool {
    pub fn new(size: usize) -> Self {
        WarmPool {
            size,
            idle: Mutex::new(HashMap::new()),
            filling: Mutex::new(HashSet::new()),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn idle_count(&self) -> usize {
        lock(&self.idle).values().map(Vec::len).sum()
    }

    /// A started one-shot container for `spec`, which passed the preamble:
    /// a warm one when there is one, else a fresh one. The caller refills
    /// the pool ([`WarmPool::refill`]) once its run is over.
    pub async fn take(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        spec: &SandboxSpec,
        prepared: Prepared,
    ) -> Result<Ready> {
        let key = key(&shared.image_for(spec)?, spec);
        let warm = lock(&self.idle).get_mut(&key).and_then(Vec::pop);
        match warm {
            Some((c, e)) => {
                // What the engine applied to this container may be less than
                // the preamble's report said.
                if let Err(err) = e.check_strict(spec) {
                    let _ = c.remove().await;
                    return Err(err);
                }
                Ok((c, e))
            }
            None => {
                shared
                    .start_waiting(spec, prepared.into_enforcement())
                    .await
            }
        }
    }

    /// Starts containers for `spec` in the background until the pool
    /// holds its size of them (unless that is under way already).
    pub fn refill(self: &Arc<Self>, shared: &Arc<Shared>, spec: &SandboxSpec) {
        let Ok(image) = shared.image_for(spec) else {
            return;
        };
        let key = key(&image, spec);
        if !lock(&self.filling).insert(key.clone()) {
            return;
        }
        let (pool, shared, spec) = (self.clone(), shared.clone(), spec.clone());
        tokio::spawn(async move {
            while lock(&pool.idle).get(&key).map_or(0, Vec::len) < pool.size {
                let started = match shared.planned(&spec).await {
                    Ok(e) => shared.start_waiting(&spec, e).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(ready) => lock(&pool.idle).entry(key.clone()).or_default().push(ready),
                    Err(_) => break,
                }
            }
            lock(&pool.filling).remove(&key);
        });
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        let all: Vec<(Endpoint, String)> = lock(&self.idle)
            .drain()
            .flat_map(|(_, v)| v)
            .map(|(c, _)| c.disown())
            .collect();
        if all.is_empty() {
            return;
        }
        // One wait removes them all at once, inside or outside a runtime.
        cleanroom_core::bridge::wait(async move {
            let removals = all
                .iter()
                .map(|(ep, id)| crate::sandbox::force_remove(ep, id));
            futures_util::future::join_all(removals).await;
        });
    }
}

/// Specs that create the same container share a key: everything but the
/// per-command settings (timeout, output limit, strictness).
fn key(image: &str, spec: &SandboxSpec) -> String {
    let normalized = SandboxSpec {
        timeout: None,
        output_limit: 0,
        strict: false,
        ..spec.clone()
    };
    format!(
        "{image}\n{}",
        serde_json::to_string(&normalized).unwrap_or_default()
    )
}

/// Locks `m`, carrying on after a panic elsewhere (the data stay usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
