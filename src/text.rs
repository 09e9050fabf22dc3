//! How tmr talks on stderr: one message, one line. A leaf (nothing from this crate), so that every
//! layer, the process plumbing and the launchers included, can speak without importing the reports.

/// One line of tmr's own on stderr. `eprintln!` panics (exit 101) when stderr is full or closed
/// (`2>/dev/full`, a reader gone); tmr's exit code must not depend on whether its message could be
/// shown, so a failed write is dropped. Control characters are escaped: one message, one line.
pub fn say(line: &str) {
    use std::io::Write;
    let mut text = one_line(line.strip_suffix('\n').unwrap_or(line));
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `text` with control characters (a newline in a command name or a value) escaped as Rust would
/// (`\n`), so that an error message stays on one line.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] })
        .collect()
}
