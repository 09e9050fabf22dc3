//! Another process's memory, read and written whole through process_vm_readv/writev: the tracer's
//! determinization (pinned AT_RANDOM, answered getrandom, replicated inputs) and its fault injection
//! share these, so they live apart from the tracer that calls them.

use anyhow::{bail, Result};
use nix::unistd::Pid;

/// Write all of `bytes` at `addr` in `pid`, or fail (a partial write is an error, not a count).
pub fn write_remote(pid: Pid, addr: u64, bytes: &[u8]) -> Result<()> {
    let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len: bytes.len() }];
    let n = nix::sys::uio::process_vm_writev(pid, &[std::io::IoSlice::new(bytes)], &remote)?;
    if n != bytes.len() {
        bail!("short write into the replica");
    }
    Ok(())
}

/// Read exactly `buf.len()` bytes at `addr` in `pid`, or fail.
pub fn read_remote_exact(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<()> {
    let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len: buf.len() }];
    let n = nix::sys::uio::process_vm_readv(pid, &mut [std::io::IoSliceMut::new(buf)], &remote)?;
    if n != buf.len() {
        bail!("short read from the replica");
    }
    Ok(())
}
