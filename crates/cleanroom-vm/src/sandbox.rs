//! [`VmSandbox`]: a long-lived sandbox in a VM of its own. Each operation
//! is one request to the agent, which holds the native sandbox inside;
//! dropping or removing it kills the VM, and the VM dies with the caller.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cleanroom_core::{
    Cmd, Enforcement, Error, Logs, OutputSink, Result, RunResult, Sandbox, SandboxSpec,
};

use crate::backend::{collect_result, describe, expect_done, receive_tar};
use crate::protocol::{Frame, Reply, Request};
use crate::vm::Vm;
use crate::NAME;

pub struct VmSandbox {
    id: String,
    enforcement: Enforcement,
    output_limit: u64,
    timeout: Option<Duration>,
    /// `None` once removed.
    vm: Arc<Mutex<Option<Vm>>>,
}

impl VmSandbox {
    pub(crate) fn new(vm: Vm, spec: &SandboxSpec, enforcement: Enforcement) -> VmSandbox {
        VmSandbox {
            id: format!("vm-{}-{}", std::process::id(), vm.pid()),
            enforcement,
            output_limit: spec.output_limit,
            timeout: spec.timeout,
            vm: Arc::new(Mutex::new(Some(vm))),
        }
    }

    /// Runs `f` on the VM off the async threads, one request at a time.
    async fn with_vm<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vm) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let vm = self.vm.clone();
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = vm.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(vm) => f(vm),
                None => Err(Error::SandboxGone { id }),
            }
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))?
    }
}

#[async_trait]
impl Sandbox for VmSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn backend(&self) -> &str {
        NAME
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    async fn exec_streaming(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        let limit = self.output_limit;
        let guard = cmd
            .timeout
            .or(self.timeout)
            .map(|t| t + Duration::from_secs(60));
        let wire = self
            .with_vm(move |vm| {
                vm.send(&Request::Exec { cmd })?;
                collect_result(vm, limit, guard, &sink)
            })
            .await?;
        let mut enforcement = self.enforcement.clone();
        enforcement.user_mapping = wire.enforcement.user_mapping.clone();
        Ok(wire.into_result(NAME, enforcement))
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        let host = host_path.to_path_buf();
        let path = sandbox_path.to_path_buf();
        self.with_vm(move |vm| {
            let tar = crate::copy::pack(&host)
                .map_err(|e| Error::io(format!("packing {} to copy in", host.display()), e))?;
            vm.send_data(&tar)?;
            vm.send(&Request::CopyIn { path })?;
            expect_done(vm)
        })
        .await
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        let host = host_path.to_path_buf();
        let path = sandbox_path.to_path_buf();
        self.with_vm(move |vm| {
            vm.send(&Request::CopyOut { path })?;
            let tar = receive_tar(vm)?;
            crate::copy::place(&tar, &host)
        })
        .await
    }

    async fn logs(&self) -> Result<Logs> {
        self.with_vm(|vm| {
            vm.send(&Request::Logs)?;
            match vm.read()? {
                Frame::Message(Reply::Logs { stdout, stderr }) => Ok(Logs { stdout, stderr }),
                Frame::Message(Reply::Failed { message }) => {
                    Err(Error::backend(NAME, format!("inside the VM: {message}")))
                }
                other => Err(Error::backend(
                    NAME,
                    format!("the agent sent {} instead of logs", describe(&other)),
                )),
            }
        })
        .await
    }

    async fn stop(&self) -> Result<()> {
        self.with_vm(|vm| {
            vm.send(&Request::Stop)?;
            expect_done(vm)
        })
        .await
    }

    async fn remove(&self) -> Result<()> {
        let vm = self.vm.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(vm) = vm.lock().unwrap_or_else(|p| p.into_inner()).take() {
                vm.shutdown();
            }
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))
    }
}
