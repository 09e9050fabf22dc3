//! Finding the command before any replica starts, the way a shell would: a name with a slash is a path,
//! anything else is looked up in PATH. Doing it up front turns "not found" (127) and "not executable" (126)
//! into one clear error instead of N failed replicas.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use crate::exit::{self, ExitError};

pub fn resolve(program: &OsStr) -> Result<PathBuf, ExitError> {
    let name = program.to_string_lossy();
    if program.is_empty() {
        return Err(ExitError { code: exit::NOT_FOUND, message: "tmr: empty command name".into() });
    }
    if program.as_bytes().contains(&b'/') {
        let path = Path::new(program);
        return match check(path) {
            Check::Ok => Ok(path.to_path_buf()),
            Check::Missing => Err(ExitError {
                code: exit::NOT_FOUND,
                message: format!("tmr: {name}: no such file or directory"),
            }),
            Check::NotExecutable(why) => {
                Err(ExitError { code: exit::NOT_EXECUTABLE, message: format!("tmr: {name}: {why}") })
            }
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut not_executable = None;
    for dir in std::env::split_paths(&path_var) {
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = dir.join(program);
        match check(&candidate) {
            Check::Ok => return Ok(candidate),
            Check::NotExecutable(why) => {
                not_executable.get_or_insert((candidate, why));
            }
            Check::Missing => {}
        }
    }
    Err(match not_executable {
        Some((p, why)) => {
            ExitError { code: exit::NOT_EXECUTABLE, message: format!("tmr: {}: {why}", p.display()) }
        }
        None => ExitError { code: exit::NOT_FOUND, message: format!("tmr: command not found: {name}") },
    })
}

enum Check {
    Ok,
    Missing,
    NotExecutable(&'static str),
}

fn check(path: &Path) -> Check {
    match std::fs::metadata(path) {
        Err(_) => Check::Missing,
        Ok(m) if m.is_dir() => Check::NotExecutable("is a directory"),
        Ok(_) if access(path, AccessFlags::X_OK).is_err() => Check::NotExecutable("permission denied"),
        Ok(_) => Check::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_on_path_and_explains_failures() {
        assert!(resolve(OsStr::new("sh")).unwrap().ends_with("sh"));
        assert_eq!(resolve(OsStr::new("no-such-command-tmr")).unwrap_err().code, 127);
        assert_eq!(resolve(OsStr::new("/no/such/file")).unwrap_err().code, 127);
        assert_eq!(resolve(OsStr::new("/")).unwrap_err().code, 126);
    }
}
