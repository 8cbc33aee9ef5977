//! The caller's own terminal for `exec -t`: raw mode while a command in a
//! sandbox owns it, restored however the exec ends, and its size.

use rustix::termios::{isatty, tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// Width and height in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub columns: u16,
    pub rows: u16,
}

/// The size of the terminal on stdout, else on stdin; `None` when neither
/// is a terminal.
pub fn size() -> Option<Size> {
    tcgetwinsize(std::io::stdout())
        .or_else(|_| tcgetwinsize(std::io::stdin()))
        .ok()
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map(|w| Size {
            columns: w.ws_col,
            rows: w.ws_row,
        })
}

/// Whether stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    isatty(std::io::stdin())
}

/// Stdin's terminal in raw mode (keys pass through unprocessed, no echo:
/// the sandbox's pseudo-terminal does that); restored on drop.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode; `None` when stdin is no terminal.
    pub fn enter() -> Option<RawMode> {
        let saved = tcgetattr(std::io::stdin()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(std::io::stdin(), OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}
