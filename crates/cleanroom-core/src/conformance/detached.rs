//! The detached lifecycle section: named sandboxes that outlive their
//! handle (`create`, `run -d`, `exec`, `ps`, `stop`, `rm`). An isolating
//! backend must hold them; one that is not (it claims no filesystem
//! isolation, as local) must refuse with an error naming those that can.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::checks::{check, expect, host_dir, set_mode, sh, show, unique};
use super::{Check, CheckFuture, CheckResult, Harness, Outcome};
use crate::cmd::Cmd;
use crate::detached::{DetachOptions, Detached, LogOptions, SandboxInfo, SandboxState};
use crate::enforcement::Constraint;
use crate::error::Error;
use crate::output::{output_channel, Stream};

pub(super) fn all() -> Vec<Check> {
    vec![
        check!(
            detached_lifecycle,
            "a named sandbox outlives its handle: exec writes, a new handle reads back, copy \
             in/out, ps shows it running, stop, ps -a shows it exited, rm leaves no trace"
        ),
        check!(
            detached_main_exits,
            "run -d: the sandbox is exited with its main command's code, and keeps its logs"
        ),
        check!(
            detached_parallel_execs,
            "16 parallel execs into one named sandbox each get their own output and exit code"
        ),
        check!(
            detached_name_race,
            "8 parallel creates of one name give one sandbox; the others say the name is in use"
        ),
    ]
}

/// Whether the backend must hold named sandboxes: every isolating one does.
fn isolating(h: &Harness) -> bool {
    h.claims(&h.spec(), Constraint::FilesystemIsolation)
}

/// For a backend that is not isolating: `create` refuses, in one line,
/// naming the backends that can, and nothing is left to list.
async fn refuses(h: &Harness) -> CheckResult {
    let name = unique("refused");
    let got = h
        .backend
        .create_detached(&h.spec(), None, options(&name))
        .await;
    let message = match got {
        Err(e @ Error::Unsupported { .. }) => e.to_string(),
        Err(e) => return Err(format!("create refused with the wrong kind of error: {e}")),
        Ok(sb) => {
            let _ = sb.remove(true).await;
            return Err("a backend without isolation created a named sandbox".into());
        }
    };
    expect(
        !message.contains('\n')
            && ["native", "podman", "docker"]
                .iter()
                .all(|b| message.contains(b)),
        || format!("the refusal should be one line naming native, podman and docker: {message}"),
    )?;
    let listed = h
        .backend
        .list(true)
        .await
        .map_err(|e| format!("list: {e}"))?;
    expect(listed.iter().all(|i| i.name != name), || {
        format!("list shows the refused sandbox: {listed:?}")
    })?;
    Ok(Outcome::ReportedNotEnforced(
        Constraint::FilesystemIsolation,
    ))
}

fn options(name: &str) -> DetachOptions {
    DetachOptions {
        name: name.to_string(),
        labels: BTreeMap::from([("conformance".to_string(), name.to_string())]),
    }
}

/// Removes the sandbox called `name` whatever state it is in, when dropped
/// at the end of a check, passed or not.
struct Cleanup<'a> {
    h: &'a Harness,
    name: String,
}

impl Cleanup<'_> {
    async fn run(self) {
        if let Ok(Some(sb)) = self.h.backend.attach(&self.name).await {
            let _ = sb.remove(true).await;
        }
    }
}

async fn listed(h: &Harness, all: bool, name: &str) -> Result<Option<SandboxInfo>, String> {
    let list = h
        .backend
        .list(all)
        .await
        .map_err(|e| format!("list(all={all}): {e}"))?;
    Ok(list.into_iter().find(|i| i.name == name))
}

async fn attach(h: &Harness, name: &str) -> Result<Box<dyn Detached>, String> {
    h.backend
        .attach(name)
        .await
        .map_err(|e| format!("attach `{name}`: {e}"))?
        .ok_or_else(|| format!("attach `{name}` found nothing"))
}

async fn exec(sb: &dyn Detached, cmd: Cmd) -> Result<crate::RunResult, String> {
    let shown = cmd.display();
    sb.exec(cmd.timeout(Duration::from_secs(60)), None)
        .await
        .map_err(|e| format!("exec `{shown}`: {e}"))
}

async fn detached_lifecycle(h: &Harness) -> CheckResult {
    if !isolating(h) {
        return refuses(h).await;
    }
    let name = unique("lc");
    let cleanup = Cleanup {
        h,
        name: name.clone(),
    };
    let result = lifecycle(h, &name).await;
    cleanup.run().await;
    result
}

async fn lifecycle(h: &Harness, name: &str) -> CheckResult {
    let spec = h.spec();
    let sb = h
        .backend
        .create_detached(&spec, None, options(name))
        .await
        .map_err(|e| format!("create: {e}"))?;
    let info = sb.info().clone();
    expect(
        info.name == name
            && info.backend == h.backend.name()
            && info.state == SandboxState::Running,
        || format!("the new sandbox's info: {info:?}"),
    )?;
    let r = exec(sb.as_ref(), sh("echo 1 > /tmp/f")).await?;
    expect(r.success(), || format!("writing: {}", show(&r)))?;
    drop(sb);

    // A new handle, as a later process gets it.
    let sb = attach(h, name).await?;
    let r = exec(sb.as_ref(), Cmd::new("cat").arg("/tmp/f")).await?;
    expect(r.stdout == b"1\n", || format!("reading back: {}", show(&r)))?;
    let r = exec(sb.as_ref(), sh("echo out; echo err >&2; exit 7")).await?;
    expect(
        r.exit_code == 7 && r.stdout == b"out\n" && r.stderr == b"err\n",
        || format!("exit code and streams: {}", show(&r)),
    )?;

    let host = host_dir("detached")?;
    let copied = async {
        let src = host.join("in.txt");
        std::fs::write(&src, b"copied\xffin").map_err(|e| e.to_string())?;
        set_mode(&src, 0o640)?;
        sb.copy_in(&src, &spec.workdir.join("in.txt"))
            .await
            .map_err(|e| format!("copy_in: {e}"))?;
        let r = exec(sb.as_ref(), sh("cat in.txt; stat -c %a in.txt")).await?;
        expect(r.stdout == b"copied\xffin640\n", || {
            format!("after copy_in (content, then mode): {}", show(&r))
        })?;
        let dst = host.join("out.txt");
        sb.copy_out(&spec.workdir.join("in.txt"), &dst)
            .await
            .map_err(|e| format!("copy_out: {e}"))?;
        let back = std::fs::read(&dst).map_err(|e| format!("reading {}: {e}", dst.display()))?;
        expect(back == b"copied\xffin", || {
            format!("copy_out gave {back:?}")
        })?;
        // A symlink inside comes out as a symlink, never as what it names.
        let r = exec(sb.as_ref(), sh("ln -s /etc/hostname /tmp/link")).await?;
        expect(r.success(), || format!("ln -s: {}", show(&r)))?;
        let link = host.join("link");
        sb.copy_out(std::path::Path::new("/tmp/link"), &link)
            .await
            .map_err(|e| format!("copy_out of a symlink: {e}"))?;
        let target = std::fs::read_link(&link)
            .map_err(|e| format!("{} should be a symlink: {e}", link.display()))?;
        expect(target == std::path::Path::new("/etc/hostname"), || {
            format!("the copied symlink points at {}", target.display())
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&host);
    copied?;

    let running = listed(h, false, name).await?;
    expect(
        running.as_ref().is_some_and(|i| {
            i.state == SandboxState::Running
                && i.labels.get("conformance").map(String::as_str) == Some(name)
        }),
        || format!("list(all=false) should show it running with its label: {running:?}"),
    )?;

    sb.stop(Duration::from_secs(5))
        .await
        .map_err(|e| format!("stop: {e}"))?;
    let running = listed(h, false, name).await?;
    expect(running.is_none(), || {
        format!("list(all=false) still shows it after stop: {running:?}")
    })?;
    let stopped = listed(h, true, name).await?;
    expect(
        matches!(
            stopped,
            Some(SandboxInfo {
                state: SandboxState::Exited { .. },
                ..
            })
        ),
        || format!("list(all=true) should show it exited: {stopped:?}"),
    )?;
    let refused = sb.exec(Cmd::new("true"), None).await;
    expect(refused.is_err(), || {
        format!("exec into a stopped sandbox succeeded: {refused:?}")
    })?;

    sb.remove(false)
        .await
        .map_err(|e| format!("remove of the stopped sandbox: {e}"))?;
    let gone = listed(h, true, name).await?;
    expect(gone.is_none(), || {
        format!("list(all=true) after remove: {gone:?}")
    })?;
    let again = h
        .backend
        .attach(name)
        .await
        .map_err(|e| format!("attach after remove: {e}"))?;
    expect(again.is_none(), || "attach after remove found it".into())?;
    Ok(Outcome::Verified)
}

async fn detached_main_exits(h: &Harness) -> CheckResult {
    if !isolating(h) {
        return refuses(h).await;
    }
    let name = unique("main");
    let cleanup = Cleanup {
        h,
        name: name.clone(),
    };
    let result = async {
        let main = sh("echo started; echo oops >&2; exit 3");
        let sb = h
            .backend
            .create_detached(&h.spec(), Some(main), options(&name))
            .await
            .map_err(|e| format!("create with a main command: {e}"))?;
        let mut state = None;
        for _ in 0..100 {
            state = listed(h, true, &name).await?.map(|i| i.state);
            if matches!(state, Some(SandboxState::Exited { .. })) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        expect(state == Some(SandboxState::Exited { code: 3 }), || {
            format!("after its main command exited 3, list(all=true) shows {state:?}")
        })?;
        let (sink, mut chunks) = output_channel(64);
        let reader = tokio::spawn(async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(c) = chunks.recv().await {
                match c.stream {
                    Stream::Stdout => out.extend(c.bytes),
                    Stream::Stderr => err.extend(c.bytes),
                }
            }
            (out, err)
        });
        sb.logs(LogOptions::default(), sink)
            .await
            .map_err(|e| format!("logs: {e}"))?;
        let (out, err) = reader.await.map_err(|e| format!("log reader: {e}"))?;
        expect(out == b"started\n" && err == b"oops\n", || {
            format!(
                "logs of the exited sandbox: stdout={:?} stderr={:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            )
        })?;
        sb.remove(false).await.map_err(|e| format!("remove: {e}"))?;
        Ok(Outcome::Verified)
    }
    .await;
    cleanup.run().await;
    result
}

async fn detached_parallel_execs(h: &Harness) -> CheckResult {
    if !isolating(h) {
        return refuses(h).await;
    }
    let name = unique("par");
    let cleanup = Cleanup {
        h,
        name: name.clone(),
    };
    let result = async {
        let sb = h
            .backend
            .create_detached(&h.spec(), None, options(&name))
            .await
            .map_err(|e| format!("create: {e}"))?;
        let sb: Arc<dyn Detached> = Arc::from(sb);
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..16 {
            let sb = sb.clone();
            runs.spawn(async move {
                let r = exec(
                    sb.as_ref(),
                    sh(&format!("echo out-{i}; echo err-{i} >&2; exit {i}")),
                )
                .await;
                (i, r)
            });
        }
        while let Some(joined) = runs.join_next().await {
            let (i, r) = joined.map_err(|e| format!("exec task: {e}"))?;
            let r = r?;
            expect(
                r.exit_code == i
                    && r.stdout == format!("out-{i}\n").as_bytes()
                    && r.stderr == format!("err-{i}\n").as_bytes(),
                || format!("exec {i} of 16: {}", show(&r)),
            )?;
        }
        sb.remove(true).await.map_err(|e| format!("remove: {e}"))?;
        Ok(Outcome::Verified)
    }
    .await;
    cleanup.run().await;
    result
}

async fn detached_name_race(h: &Harness) -> CheckResult {
    if !isolating(h) {
        return refuses(h).await;
    }
    let name = unique("race");
    let cleanup = Cleanup {
        h,
        name: name.clone(),
    };
    let result = async {
        let spec = h.spec();
        let mut creates = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (backend, spec, options) = (h.backend.clone(), spec.clone(), options(&name));
            creates.spawn(async move {
                backend
                    .create_detached(&spec, None, options)
                    .await
                    .map(drop)
            });
        }
        let mut made = 0;
        while let Some(joined) = creates.join_next().await {
            match joined.map_err(|e| format!("create task: {e}"))? {
                Ok(()) => made += 1,
                Err(e) if e.to_string().contains("already in use") => {}
                Err(e) => return Err(format!("a losing create gave another error: {e}")),
            }
        }
        expect(made == 1, || {
            format!("{made} of 8 creates of one name succeeded")
        })?;
        let all = h
            .backend
            .list(true)
            .await
            .map_err(|e| format!("list: {e}"))?;
        let same = all.iter().filter(|i| i.name == name).count();
        expect(same == 1, || {
            format!("list(all=true) shows {same} sandboxes named {name}")
        })?;
        Ok(Outcome::Verified)
    }
    .await;
    cleanup.run().await;
    result
}
