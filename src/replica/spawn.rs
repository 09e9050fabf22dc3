//! Start one replica: clone + exec. The only place that runs code in a child before exec, so it follows
//! the rules for that strictly: every allocation happens before the clone, the child calls only
//! async-signal-safe libc functions and leaves with `_exit`, and an exec failure travels back over a
//! CLOEXEC pipe.
//!
//! The child is cloned `CLONE_VM | CLONE_VFORK`, the way posix_spawn does it: it borrows tmr's memory on a
//! stack of its own until exec, and tmr waits meanwhile. A plain fork copied tmr's page tables and left
//! every page tmr touched afterwards to a copy-on-write fault; with a 5 MB binary that was most of what
//! `tmr -n 3 true` cost beyond the three `true`s.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::unistd::Pid;

/// Extra set-up the child performs between fork and exec.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildSetup {
    /// `personality(2)` flags.
    pub personality: Option<libc::c_ulong>,
    /// An fd to hand the child as fd 3 (the memory monitor's snapshot channel).
    pub fd3: Option<RawFd>,
    /// `--fork`: the batch starts each group of jobs as one exec'd replica that forks the others after
    /// its loader (`forkrun.rs`).
    pub fork: bool,
    /// Stop at exec for tmr to trace (PTRACE_TRACEME): the original of a `--fork` group.
    pub trace_me: bool,
}

/// A forked replica. Whether its exec succeeded arrives later on `exec_report` (see [`exec_result`]):
/// waiting for it here would serialise the replicas' start-up.
pub struct Spawned {
    pub pid: Pid,
    pub exec_report: OwnedFd,
}

pub enum ExecResult {
    Pending,
    Started,
    /// exec failed in the child with this errno; the child `_exit`s with 127.
    Failed(i32),
}

/// Read the exec report without blocking: EOF means the CLOEXEC write end vanished at a successful exec.
pub fn exec_result(fd: &OwnedFd) -> ExecResult {
    let mut buf = [0u8; 4];
    loop {
        return match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(4) => ExecResult::Failed(i32::from_ne_bytes(buf)),
            Ok(_) => ExecResult::Started,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => ExecResult::Pending,
            Err(_) => ExecResult::Started,
        };
    }
}

/// The shell a script without a `#!` line is run with, as execvp(3) does.
const BSHELL: &CStr = c"/bin/sh";

/// The argv/envp arrays in the exact form execve wants, built before forking.
pub struct ExecImage<'a> {
    path: &'a CStr,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `/bin/sh PATH ARGS...`: the fallback when the kernel does not recognise the file (ENOEXEC).
    sh_argv: Vec<*const libc::c_char>,
}

impl<'a> ExecImage<'a> {
    /// `script`: the file may be run by `/bin/sh` when the kernel refuses it (see [`looks_like_script`]).
    pub fn new(path: &'a CStr, argv: &'a [CString], env: &'a [CString], script: bool) -> Self {
        let ptrs = |v: &'a [CString]| -> Vec<*const libc::c_char> {
            v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
        };
        let sh_argv = if script {
            [BSHELL.as_ptr(), path.as_ptr()]
                .into_iter()
                .chain(argv.iter().skip(1).map(|s| s.as_ptr()))
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        } else {
            Vec::new()
        };
        ExecImage { path, argv: ptrs(argv), envp: ptrs(env), sh_argv }
    }
}

/// Whether a file the kernel cannot execute should be run by `/bin/sh`, as execvp does for ENOEXEC:
/// only text. A broken binary (ELF magic, or a NUL among its first bytes, bash's test) stays an exec
/// error (126) instead of being fed to the shell as garbage. Decided once, before any replica starts.
pub fn looks_like_script(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 256];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else { return false };
    let head = &head[..n];
    !head.starts_with(b"\x7fELF") && !head.contains(&0)
}

/// Start one replica with the given fds as its stdin, stdout and stderr, in a process group of its own.
/// The fds must be >= 3 (tmr makes sure 0, 1 and 2 are open at start-up), so `dup2` always copies them and
/// the CLOEXEC originals vanish at exec.
pub fn spawn(image: &ExecImage, stdio: [RawFd; 3], setup: ChildSetup, caught: &Caught) -> Result<Spawned> {
    debug_assert!(stdio.iter().all(|&fd| fd > 2));
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating the exec-error pipe")?;
    let err_w_fd = err_w.as_raw_fd();

    // The child's stack until exec, allocated before the clone (the child must not allocate). Never read
    // before the child writes it, so left uninitialised: only the few pages it touches are faulted in.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    let args =
        ChildArgs { image, stdio, setup, caught, err_fd: err_w_fd, parent: nix::unistd::getpid().as_raw() };
    // Block every signal across the clone, so no handler of tmr's runs in the child before exec; the child
    // clears the mask just before exec.
    let mut all: libc::sigset_t = unsafe_zeroed_sigset();
    let mut old: libc::sigset_t = unsafe_zeroed_sigset();
    // SAFETY: both sets are valid, initialised sigset_t values owned by this frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
    }
    // SAFETY: tmr is single-threaded when it spawns (no reader threads by design). The child runs
    // `child_entry` on `stack`, which outlives it: CLONE_VFORK suspends this thread until the child has
    // exec'd or exited, so `stack` and `args` stay alive and untouched, and nothing else runs in the
    // shared memory meanwhile. The child only calls async-signal-safe functions, then execs or `_exit`s.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.capacity());
        let top = top.sub(top as usize % 16);
        libc::clone(
            child_entry,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&args as *const ChildArgs).cast_mut().cast(),
        )
    };
    drop(stack);
    // SAFETY: restores the mask saved above, in the parent.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("clone failed (cannot start a replica)");
    }
    let pid = Pid::from_raw(pid);
    // The child made its session and group before exec, and CLONE_VFORK held this thread until then: a
    // signal sent to the group from now on reaches it.
    drop(err_w);
    super::stdin::set_nonblocking(&err_r)?;
    Ok(Spawned { pid, exec_report: err_r })
}

/// Plenty for `child_exec`'s few frames of thin libc wrappers.
const CHILD_STACK: usize = 64 << 10;

struct ChildArgs<'a> {
    image: &'a ExecImage<'a>,
    stdio: [RawFd; 3],
    setup: ChildSetup,
    caught: &'a Caught,
    err_fd: RawFd,
    /// tmr's pid, to tell whether it died before the child asked to die with it.
    parent: libc::pid_t,
}

/// The signals tmr has handlers for, read once in the parent (after its handlers are installed): the
/// child resets exactly these, instead of querying all 64 dispositions while tmr waits for it.
pub struct Caught(libc::sigset_t);

impl Caught {
    pub fn now() -> Self {
        let mut set = unsafe_zeroed_sigset();
        // SAFETY: `set` and `old` are valid sigset_t/sigaction values owned by this frame; querying a
        // disposition (null new action) changes nothing.
        unsafe {
            libc::sigemptyset(&mut set);
            for sig in 1..=libc::SIGRTMAX() {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != libc::SIG_IGN
                {
                    libc::sigaddset(&mut set, sig);
                }
            }
        }
        Caught(set)
    }
}

extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` that `spawn` keeps alive until this child has exec'd or exited,
    // and this is the freshly cloned child; see `child_exec`.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        child_exec(a.image, a.stdio, a.setup, a.caught, a.err_fd, a.parent)
    }
}

fn unsafe_zeroed_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero is a valid (empty) value that sigfillset/sigemptyset overwrite.
    unsafe { std::mem::zeroed() }
}

/// Runs in the forked child: only async-signal-safe calls, no allocation, never returns.
///
/// # Safety
/// Must be called only in a child just cloned from a single-threaded parent, with `image` and the fds
/// prepared before the clone.
unsafe fn child_exec(
    image: &ExecImage,
    stdio: [RawFd; 3],
    setup: ChildSetup,
    caught: &Caught,
    err_fd: RawFd,
    parent: libc::pid_t,
) -> ! {
    // A session of its own, not only a process group: with no controlling terminal, a replica that opens
    // /dev/tty (a password prompt) fails at once with ENXIO instead of being stopped by SIGTTIN forever in
    // a background group of tmr's terminal. Its pgid is still its pid, for killpg.
    if libc::setsid() < 0 {
        libc::setpgid(0, 0);
    }
    // Die with tmr, even by SIGKILL, which leaves tmr no chance to kill its replicas. The death signal
    // follows the parent *thread*; tmr spawns from its only thread, so that is tmr itself. It survives
    // exec (tmr never runs set-uid programs specially). If tmr died before this line, nobody will send it.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
    if libc::getppid() != parent {
        libc::_exit(127);
    }
    for (target, &fd) in stdio.iter().enumerate() {
        if libc::dup2(fd, target as RawFd) < 0 {
            child_fail(err_fd);
        }
    }
    // Rust ignores SIGPIPE and the setting survives exec: a replica must see the default, or `yes | head`
    // behaves differently under tmr.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    if let Some(fd) = setup.fd3 {
        if libc::dup2(fd, 3) < 0 {
            child_fail(err_fd);
        }
    }
    if let Some(persona) = setup.personality {
        if libc::personality(persona) < 0 {
            child_fail(err_fd);
        }
    }
    // The child shares tmr's memory until exec: a signal caught here would run tmr's handler on tmr's
    // state (a SIGINT meant for the replica would stop the whole run). Reset every caught signal before
    // unblocking, as posix_spawn does; ignored ones stay ignored, as across any exec.
    let mut dfl: libc::sigaction = std::mem::zeroed();
    dfl.sa_sigaction = libc::SIG_DFL;
    for sig in 1..=libc::SIGRTMAX() {
        if libc::sigismember(&caught.0, sig) == 1 {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    if setup.trace_me && libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
        child_fail(err_fd);
    }
    libc::execve(image.path.as_ptr(), image.argv.as_ptr(), image.envp.as_ptr());
    if *libc::__errno_location() == libc::ENOEXEC && !image.sh_argv.is_empty() {
        // No `#!` line and no binary format the kernel knows: a shell script, as execvp treats it.
        libc::execve(BSHELL.as_ptr(), image.sh_argv.as_ptr(), image.envp.as_ptr());
        *libc::__errno_location() = libc::ENOEXEC;
    }
    child_fail(err_fd)
}

/// Report errno to the parent and leave without running any of Rust's exit machinery.
unsafe fn child_fail(err_fd: RawFd) -> ! {
    let errno = *libc::__errno_location();
    let bytes = errno.to_ne_bytes();
    libc::write(err_fd, bytes.as_ptr().cast(), bytes.len());
    libc::_exit(127)
}
