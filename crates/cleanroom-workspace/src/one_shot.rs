//! Workspaces on the local backend, which has no long-lived sandboxes:
//! each `exec` is a one-shot run of the command with the workspace copy as
//! its working directory. Acceptable because local isolates nothing anyway
//! (it says so at start and at every exec): the copy, the history and the
//! conflict-safe sync still protect the project.

use std::io::Write;
use std::path::{Path, PathBuf};

use cleanroom::detached::ExecStdio;
use cleanroom::output::{output_channel, Stream};
use cleanroom::{Backend, Cmd, OutputSink, Result, RunResult, SandboxSpec};

use crate::workspace::MOUNT_POINT;

/// Whether workspaces on `backend` run each exec as a one-shot.
pub(crate) fn is_one_shot(backend: &str) -> bool {
    backend == "local"
}

/// The warning every start and exec on such a backend gives.
pub(crate) fn warning(workspace: &str) -> String {
    format!(
        "the local backend does not isolate: commands in workspace {workspace} see the whole host \
         (the project itself is only changed by `sync`)"
    )
}

/// Where a command's working directory lands: `/workspace` (or a path
/// under it, or a relative one) is the copy `tree`; any other path is the
/// host's own, as everything is on local.
fn workdir(tree: &Path, asked: Option<&Path>) -> PathBuf {
    match asked {
        None => tree.to_path_buf(),
        Some(p) if p.is_relative() => tree.join(p),
        Some(p) => match p.strip_prefix(MOUNT_POINT) {
            Ok(rest) => tree.join(rest),
            Err(_) => p.to_path_buf(),
        },
    }
}

/// Runs `cmd` once in `tree`, output captured and sent to `sink`.
pub(crate) async fn run(
    backend: &dyn Backend,
    spec: &SandboxSpec,
    tree: &Path,
    mut cmd: Cmd,
    sink: Option<OutputSink>,
) -> Result<RunResult> {
    cmd.workdir = Some(workdir(tree, cmd.workdir.as_deref()));
    backend.run_streaming(spec, cmd, sink).await
}

/// Runs `cmd` once in `tree` with its output on the caller's stdout and
/// stderr as it comes; its exit code. A one-shot run gets no terminal and
/// no stdin, so `-t` and `-i` are refused rather than ignored.
pub(crate) async fn run_on_caller_streams(
    backend: &dyn Backend,
    spec: &SandboxSpec,
    tree: &Path,
    cmd: Cmd,
    stdio: ExecStdio,
) -> Result<i32> {
    if stdio.stdin || stdio.tty {
        return Err(cleanroom::Error::Unsupported {
            backend: backend.name().to_string(),
            what:
                "-i and -t in a workspace: local runs each exec as a one-shot without \
                   stdin or a terminal; start the workspace with --backend native, docker or podman"
                    .to_string(),
        });
    }
    let (sink, mut chunks) = output_channel(64);
    let forward = tokio::spawn(async move {
        while let Some(chunk) = chunks.recv().await {
            // The caller's streams going away (a closed pipe) must not
            // stop the command or its commit.
            let _ = match chunk.stream {
                Stream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&chunk.bytes).and_then(|_| out.flush())
                }
                Stream::Stderr => std::io::stderr().lock().write_all(&chunk.bytes),
            };
        }
    });
    let result = run(backend, spec, tree, cmd, Some(sink)).await;
    let _ = forward.await;
    Ok(result?.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_land_in_the_copy() {
        let tree = Path::new("/ws/tree");
        assert_eq!(workdir(tree, None), tree);
        assert_eq!(workdir(tree, Some(Path::new("src"))), tree.join("src"));
        assert_eq!(
            workdir(tree, Some(Path::new("/workspace/src"))),
            tree.join("src")
        );
        assert_eq!(workdir(tree, Some(Path::new("/workspace"))), tree);
        assert_eq!(workdir(tree, Some(Path::new("/opt"))), Path::new("/opt"));
    }
}
