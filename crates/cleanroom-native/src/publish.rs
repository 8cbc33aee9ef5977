//! Published ports: a small TCP proxy in the caller, listening on the host's
//! 127.0.0.1. Each connection asks the sandbox's init for a connection to
//! the port on the sandbox's own loopback (the init is inside the network
//! namespace, so no namespace switching happens in the caller) and copies
//! bytes both ways.

use std::sync::{Arc, Weak};

use cleanroom_core::{Error, PortPublish, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::client::Instance;

/// Listens for every port in `ports`; returns (sandbox port, host port)
/// pairs and the proxy tasks (abort them to stop publishing).
pub async fn publish(
    inst: &Arc<Instance>,
    ports: &[PortPublish],
) -> Result<(Vec<(u16, u16)>, Vec<JoinHandle<()>>)> {
    let mut mapped = Vec::new();
    let mut tasks = Vec::new();
    for p in ports {
        let listener = match TcpListener::bind(("127.0.0.1", p.host_port)).await {
            Ok(l) => l,
            Err(e) => {
                for t in &tasks {
                    JoinHandle::abort(t);
                }
                return Err(Error::io(
                    format!(
                        "publishing sandbox port {} on 127.0.0.1:{} (choose another host port, or 0 for any)",
                        p.sandbox_port, p.host_port
                    ),
                    e,
                ));
            }
        };
        let host_port = listener
            .local_addr()
            .map_err(|e| Error::io("reading the published port", e))?
            .port();
        mapped.push((p.sandbox_port, host_port));
        tasks.push(tokio::spawn(serve(
            listener,
            Arc::downgrade(inst),
            p.sandbox_port,
        )));
    }
    Ok((mapped, tasks))
}

async fn serve(listener: TcpListener, inst: Weak<Instance>, port: u16) {
    while let Ok((mut outside, _)) = listener.accept().await {
        let Some(inst) = inst.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let inside = match inst.connect(port).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("native: published port {port}: {e}");
                    return;
                }
            };
            drop(inst);
            let Ok(mut inside) = TcpStream::from_std(inside) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
        });
    }
}
