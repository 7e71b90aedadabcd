//! The `keymigrate` binary: everything happens in the library's `run`.

use std::process::ExitCode;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // Only the location: a panic message is not allowed to carry anything an operator typed.
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("keymigrate: internal error (a bug){at}; please report it");
        std::process::exit(255);
    }));
    ExitCode::from(keymigrate::run(std::env::args_os().collect()))
}
