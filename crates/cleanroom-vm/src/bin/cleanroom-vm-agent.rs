//! The vm backend's guest agent, the `/init` of every VM's initramfs.

fn main() {
    let why = cleanroom_vm::agent::main();
    if std::process::id() != 1 {
        eprintln!("{why}");
        std::process::exit(2);
    }
    cleanroom_vm::agent::fatal(&why);
}
