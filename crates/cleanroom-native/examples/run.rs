//! Runs one command in a native sandbox on the host rootfs:
//! `cargo run -p cleanroom-native --example run -- sh -c 'id; ls /'`.

use cleanroom_core::{Backend, Cmd, SandboxSpec};

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let backend = cleanroom_native::NativeBackend::new();
    match backend.run(&SandboxSpec::default(), Cmd::from(argv)).await {
        Ok(r) => {
            print!("{}", r.stdout_lossy());
            eprint!("{}", r.stderr_lossy());
            eprintln!("[{}]", r.status_line());
        }
        Err(e) => eprintln!("error: {e}"),
    }
}
