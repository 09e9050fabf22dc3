//! Reading a stopped tracee's writable memory and hashing it page by page. Runs inside the per-replica
//! monitor process (never in tmr itself), so a crash while reading one replica cannot take tmr down, and
//! all replicas are hashed in parallel on all cores. Anonymous pages that were never populated (neither
//! present nor swapped in /proc/PID/pagemap) read as zeros and are not read at all, and runs of zero
//! pages ship as one unit, so the cost follows the pages a replica touched, not its virtual size.

use std::io::IoSliceMut;

use anyhow::{Context, Result};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

use crate::memvote::{pid_words, Digests, PidPage, Region, MAX_PID_PAGES, PAGE};

/// A writable private mapping from /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub name: String,
}

/// Writable private mappings, named by path, `[heap]`, `[stack]`, or `[anon]`.
pub fn writable_mappings(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let (_offset, _dev, _inode) = (f.next()?, f.next()?, f.next()?);
            let name = f.collect::<Vec<_>>().join(" ");
            let p = perms.as_bytes();
            if p.len() < 4 || p[1] != b'w' || p[3] != b'p' || name == "[vsyscall]" {
                return None;
            }
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                name: if name.is_empty() { "[anon]".into() } else { name },
            })
        })
        .collect()
}

/// What to blank before hashing: bytes below the stack pointer (dead stack) and the thread id in the
/// thread control block (it differs per replica).
pub struct Masks {
    pub rsp: Option<u64>,
    /// The replica's pid and its TCB address: pages of the TCB, the heap and the stack (where libraries
    /// keep copies of it) that hold the pid are shipped whole, for the voter to blank the pid slots
    /// ([`crate::memvote::PidPage`]). A PID namespace would make it equal instead, but the replica would
    /// then be pid 1 and ignore the signals it sends itself (abort, kill $$).
    pub tid: Option<(u32, u64)>,
    /// `TMR_REPLICA=<i>` and friends: they differ by design between replicas and rounds. Blanked in the
    /// environment block on the stack and wherever a program copied them, and so are pointers to them.
    /// The values themselves stay as users expect them (`[ "$TMR_REPLICA" = 0 ]`), unpadded: TMR_PAD
    /// keeps the block's total length fixed, and the masks make the rest equal.
    pub replica_env: Vec<Vec<u8>>,
}

pub struct Hashed {
    pub regions: Vec<Region>,
    pub bytes: u64,
    pub pid_pages: Vec<PidPage>,
    /// Pages holding the pid beyond [`MAX_PID_PAGES`], and the address of the first: the voter lets this
    /// replica abstain on those where the others found pid slots.
    pub pid_pages_dropped: usize,
    pub pid_pages_from: Option<u64>,
}

/// Hash one page into `digests`; keep it whole if it holds the pid and is a place where copies live.
fn hash_page(out: &mut Hashed, digests: &mut Digests, addr: u64, page: &[u8], pid: Option<u32>) {
    digests.push_page(page);
    out.bytes += PAGE;
    if pid.is_some_and(|p| !pid_words(page, p).is_empty()) {
        if out.pid_pages.len() < MAX_PID_PAGES {
            out.pid_pages.push(PidPage { addr, bytes: page.to_vec() });
        } else {
            out.pid_pages_dropped += 1;
            out.pid_pages_from = Some(out.pid_pages_from.map_or(addr, |a| a.min(addr)));
        }
    }
}

pub fn hash_memory(pid: Pid, masks: &Masks) -> Result<Hashed> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("reading /proc/PID/maps")?;
    let mut out = Hashed {
        regions: Vec::new(),
        bytes: 0,
        pid_pages: Vec::new(),
        pid_pages_dropped: 0,
        pid_pages_from: None,
    };
    let own_pid = masks.tid.map(|t| t.0);
    let margin = masks.replica_env.iter().map(Vec::len).max().unwrap_or(0) as u64;
    let mut buf = vec![0u8; CHUNK + 2 * margin as usize];
    let mut pagemap = Pagemap::open(pid);
    let mappings = writable_mappings(&maps);
    // The stack first: where the TMR_* strings sit in it bounds the pointers to them, which programs keep
    // elsewhere too (dash points into the environment block instead of copying it).
    let mut stack_region = None;
    let mut env_range = None;
    if let Some(m) = mappings.iter().find(|m| m.name == "[stack]") {
        let start = masks.rsp.filter(|&r| r >= m.start && r < m.end).map_or(m.start, |rsp| rsp & !(PAGE - 1));
        let mut digests = Digests::default();
        // The live stack is small: read it whole, so masks see strings that straddle pages.
        let mut stack = vec![0u8; (m.end - start) as usize];
        let got = read_remote(pid, start, &mut stack);
        stack.truncate(got - got % PAGE as usize);
        env_range = mask_stack(&mut stack, start, masks);
        for (i, page) in stack.chunks(PAGE as usize).enumerate() {
            hash_page(&mut out, &mut digests, start + i as u64 * PAGE, page, own_pid);
        }
        for _ in 0..((m.end - start) as usize - stack.len()) / PAGE as usize {
            digests.push_unreadable();
        }
        stack_region = Some(Region { name: m.name.clone(), start, end: m.end, digests: digests.finish() });
    }
    let masker = Masker::new(&masks.replica_env, env_range);
    for m in mappings {
        if m.name == "[stack]" {
            out.regions.extend(stack_region.take());
            continue;
        }
        let start = m.start;
        let mut digests = Digests::default();
        // Anonymous memory never touched (or dropped) reads as zeros: skip it unread.
        let anonymous = m.name == "[heap]" || m.name == "[anon]";
        let mut at = start;
        while at < m.end {
            let len = ((m.end - at) as usize).min(CHUNK);
            if anonymous && pagemap.absent(at, len as u64 / PAGE) {
                digests.push_zeros(len / PAGE as usize);
                at += len as u64;
                continue;
            }
            // Read a margin on both sides, so a TMR_* string that straddles two chunks is found from
            // either; only the chunk itself is hashed.
            let (mut lo, mut hi) =
                (at.saturating_sub(margin).max(start), (at + len as u64 + margin).min(m.end));
            let mut got_window = read_remote(pid, lo, &mut buf[..(hi - lo) as usize]);
            if got_window < (at - lo) as usize + len {
                // An unreadable page in the margin must not hide a readable chunk: read the chunk alone.
                (lo, hi) = (at, at + len as u64);
                got_window = read_remote(pid, lo, &mut buf[..(hi - lo) as usize]);
            }
            let window = &mut buf[..(hi - lo) as usize];
            if let Some(masker) = &masker {
                masker.mask(&mut window[..got_window], lo);
            }
            let skip = (at - lo) as usize;
            let got = got_window.saturating_sub(skip).min(len);
            let chunk = &window[skip..skip + len];
            for (i, page) in chunk.chunks(PAGE as usize).enumerate() {
                let addr = at + i as u64 * PAGE;
                if (i + 1) * PAGE as usize > got {
                    digests.push_unreadable();
                    continue;
                }
                let near_tcb =
                    |fs_base: u64| addr + PAGE > fs_base.saturating_sub(PAGE) && addr < fs_base + PAGE;
                let copies_here = masks.tid.is_some_and(|(_, fs)| near_tcb(fs)) || m.name == "[heap]";
                hash_page(&mut out, &mut digests, addr, page, own_pid.filter(|_| copies_here));
            }
            at += len as u64;
        }
        out.regions.push(Region { name: m.name, start, end: m.end, digests: digests.finish() });
    }
    Ok(out)
}

/// Which pages of the tracee are in memory or swap, from /proc/PID/pagemap (one 64-bit entry per page),
/// read in batches: a page that is neither was never populated, and an anonymous one reads as zeros.
struct Pagemap {
    file: Option<std::fs::File>,
    /// Page number of `entries[0]`.
    first: u64,
    entries: Vec<u64>,
}

/// Entries per read: 512 KiB of pagemap, covering 256 MiB of address space.
const PAGEMAP_BATCH: usize = 1 << 16;
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;

impl Pagemap {
    fn open(pid: Pid) -> Self {
        let file = std::fs::File::open(format!("/proc/{pid}/pagemap")).ok();
        Pagemap { file, first: 0, entries: Vec::new() }
    }

    /// Are all `n` pages from `addr` unpopulated? False whenever pagemap cannot tell.
    fn absent(&mut self, addr: u64, n: u64) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.file else { return false };
        let page = addr / PAGE;
        let cached = page >= self.first && page + n <= self.first + self.entries.len() as u64;
        if !cached {
            let mut bytes = vec![0u8; PAGEMAP_BATCH.max(n as usize) * 8];
            let got = match file.read_at(&mut bytes, page * 8) {
                Ok(got) => got,
                Err(_) => {
                    self.file = None;
                    return false;
                }
            };
            self.first = page;
            self.entries = bytes[..got - got % 8]
                .chunks_exact(8)
                .map(|e| u64::from_le_bytes(e.try_into().expect("8 bytes")))
                .collect();
            if (self.entries.len() as u64) < n {
                return false;
            }
        }
        let from = (page - self.first) as usize;
        self.entries[from..from + n as usize].iter().all(|e| e & (PM_PRESENT | PM_SWAPPED) == 0)
    }
}

/// Cache-sized: a 64 KiB piece is still in L2 when it is hashed (1 MiB measured 2x slower).
const CHUNK: usize = 1 << 16;

/// Blanks the TMR_* strings wherever a program copied them (sh keeps `NAME=value` copies of its
/// environment on the heap) and aligned pointers into the stack's TMR_* strings (dash points into the
/// environment block instead of copying it). The values differ by design between replicas and rounds; a
/// blanked copy reads as zeros whatever the number's length, and TMR_PAD keeps the strings' total
/// length fixed, so a copy of the block as a whole is equal too.
///
/// Two single-literal searches, which the regex crate runs as SIMD substring searches: the strings'
/// shared prefix, and the six high bytes every pointer into the strings shares. Measured on 200 MiB:
/// testing every aligned word, or one search for two literals, or a fused SWAR word loop, each cost
/// more than both searches together.
struct Masker {
    prefix: regex::bytes::Regex,
    strings: Vec<Vec<u8>>,
    /// The stack addresses of the TMR_* strings, and the search for pointers to them (absent when the
    /// strings straddle a 64 KiB boundary: then every aligned word is tested).
    range: Option<(u64, u64)>,
    needle: Option<regex::bytes::Regex>,
}

impl Masker {
    fn new(strings: &[Vec<u8>], range: Option<(u64, u64)>) -> Option<Masker> {
        let first = strings.first()?;
        let shared = (0..first.len())
            .take_while(|&i| strings.iter().all(|s| s.get(i) == Some(&first[i])))
            .count()
            .max(1);
        let literal = |bytes: &[u8]| {
            let pattern: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            regex::bytes::RegexBuilder::new(&pattern).unicode(false).build().ok()
        };
        let needle = range
            .filter(|&(lo, hi)| hi > lo && lo >> 16 == (hi - 1) >> 16)
            .and_then(|(lo, _)| literal(&lo.to_le_bytes()[2..]));
        Some(Masker { prefix: literal(&first[..shared])?, strings: strings.to_vec(), range, needle })
    }

    /// Mask `bytes`, which start at address `base`.
    fn mask(&self, bytes: &mut [u8], base: u64) {
        let mut at = 0;
        while let Some(start) = self.prefix.find_at(bytes, at).map(|m| m.start()) {
            at = start + 1;
            if let Some(s) = self.strings.iter().find(|s| bytes[start..].starts_with(s)) {
                bytes[start..start + s.len()].fill(0);
                at = start + s.len();
            }
        }
        let Some(range) = self.range else { return };
        let Some(needle) = &self.needle else { return mask_pointer_words(bytes, base, range) };
        let mut at = 2;
        while let Some(start) = needle.find_at(bytes, at).map(|m| m.start()) {
            at = start + 1;
            let word = start - 2;
            if (base + word as u64) % 8 == 0
                && word + 8 <= bytes.len()
                && in_range(&bytes[word..word + 8], range)
            {
                bytes[word..word + 8].fill(0);
            }
        }
    }
}

fn in_range(word: &[u8], (lo, hi): (u64, u64)) -> bool {
    let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
    v >= lo && v < hi
}

/// Blank aligned words that point into `[lo, hi)`, testing each; `bytes` starts at address `base`.
fn mask_pointer_words(bytes: &mut [u8], base: u64, range: (u64, u64)) {
    let skip = (((8 - base % 8) % 8) as usize).min(bytes.len());
    for word in bytes[skip..].chunks_exact_mut(8) {
        if in_range(word, range) {
            word.fill(0);
        }
    }
}

/// Read as much of [addr, addr+len) as possible; returns the length of the readable prefix.
fn read_remote(pid: Pid, addr: u64, buf: &mut [u8]) -> usize {
    let len = buf.len();
    let remote = [RemoteIoVec { base: addr as usize, len }];
    match process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &remote) {
        Ok(n) if n == len => n,
        // A partial or failed read: retry page by page so one bad page does not hide the rest.
        _ => {
            let mut ok = 0;
            for (i, page) in buf.chunks_mut(PAGE as usize).enumerate() {
                let remote = [RemoteIoVec { base: addr as usize + i * PAGE as usize, len: page.len() }];
                match process_vm_readv(pid, &mut [IoSliceMut::new(page)], &remote) {
                    Ok(n) if n == page.len() => ok += n,
                    _ => break,
                }
            }
            ok
        }
    }
}

/// The stack's masks, over the whole live stack at once (`base` is its first address): dead bytes below
/// the stack pointer, the TMR_* environment strings, and the envp pointers into those strings
/// (their block has a fixed start and length, but where each string starts inside it depends on the
/// lengths of the numbers).
fn mask_stack(stack: &mut [u8], base: u64, masks: &Masks) -> Option<(u64, u64)> {
    if let Some(rsp) = masks.rsp.filter(|&r| r >= base && r < base + stack.len() as u64) {
        stack[..(rsp - base) as usize].fill(0);
    }
    let (mut lo, mut hi) = (u64::MAX, 0);
    for pattern in &masks.replica_env {
        for at in mask_env_value(stack, pattern) {
            lo = lo.min(base + at as u64);
            hi = hi.max(base + (at + pattern.len()) as u64 + 1);
        }
    }
    let range = (lo < hi).then_some((lo, hi));
    if let Some(range) = range {
        mask_pointer_words(stack, base, range);
    }
    range
}

/// Blank `NAME=value` wherever it occurs in the page. The whole string, not just the value: the TMR_*
/// variables sit together and, padded by TMR_PAD, always fill the same bytes, so blanking them all (their
/// NUL separators are zero already) leaves identical bytes whatever the numbers' lengths.
/// Returns the offsets where it was found.
fn mask_env_value(page: &mut [u8], pattern: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 0;
    while i + pattern.len() <= page.len() {
        if &page[i..i + pattern.len()] == pattern {
            page[i..i + pattern.len()].fill(0);
            found.push(i);
            i += pattern.len();
        } else {
            i += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_writable_private_mappings_are_voted() {
        let maps = "\
55d0a000-55d0b000 r--p 00000000 08:01 123 /usr/bin/prog
55d0c000-55d0d000 rw-p 00002000 08:01 123 /usr/bin/prog
55d0e000-55d2f000 rw-p 00000000 00:00 0 [heap]
7f00000000-7f00001000 rw-s 00000000 00:05 9 /dev/shm/x
7f00002000-7f00003000 rw-p 00000000 00:00 0
7ffc0000-7ffc2000 rw-p 00000000 00:00 0 [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]";
        let m = writable_mappings(maps);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["/usr/bin/prog", "[heap]", "[anon]", "[stack]"]);
        assert_eq!((m[1].start, m[1].end), (0x55d0e000, 0x55d2f000));
    }

    /// Equal heaps whose data holds the value 500 in more pages than a monitor ships, then each
    /// replica's own pid in one word: replica 0 (pid 500) reaches its cap before the real pid page.
    #[test]
    fn a_replica_past_its_pid_page_cap_abstains_instead_of_diverging() {
        use crate::memvote::{key_against, vote_pages, MemSnapshot};
        let snapshot = |pid: u32| {
            let pages = MAX_PID_PAGES + 1;
            let start = 0x10000u64;
            let mut out = Hashed {
                regions: vec![],
                bytes: 0,
                pid_pages: vec![],
                pid_pages_dropped: 0,
                pid_pages_from: None,
            };
            let mut digests = Digests::default();
            for p in 0..pages {
                let mut page = vec![7u8; PAGE as usize];
                if p < MAX_PID_PAGES {
                    page[40..44].copy_from_slice(&500u32.to_le_bytes());
                } else {
                    page[8..12].copy_from_slice(&pid.to_le_bytes());
                }
                hash_page(&mut out, &mut digests, start + p as u64 * PAGE, &page, Some(pid));
            }
            MemSnapshot {
                regions: vec![Region {
                    name: "[heap]".into(),
                    start,
                    end: start + pages as u64 * PAGE,
                    digests: digests.finish(),
                }],
                pid: Some(pid),
                pid_pages: out.pid_pages,
                pid_pages_from: out.pid_pages_from,
                ..Default::default()
            }
        };
        let snaps = [snapshot(500), snapshot(501), snapshot(502)];
        assert!(snaps[0].pid_pages_from.is_some() && snaps[1].pid_pages_from.is_none());
        let v = vote_pages(&snaps.iter().map(Some).collect::<Vec<_>>());
        assert!(v.divergent.is_empty() && v.noise.is_empty(), "{v:?}");
        assert!(v.keys.iter().all(|k| *k == v.keys[0]));
        assert_eq!(key_against(&snaps[1], &snaps[0], &v.noise), v.keys[0]);
    }

    #[test]
    fn tmr_strings_and_aligned_pointers_to_them_are_blanked() {
        let (lo, hi) = (0x7fff_ffff_e100u64, 0x7fff_ffff_e180u64);
        let mut page = vec![0x11u8; PAGE as usize];
        let put = |page: &mut Vec<u8>, at: usize, v: u64| page[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut page, 16, lo);
        put(&mut page, 64, hi - 1);
        put(&mut page, 128, hi); // just past the strings
        put(&mut page, 203, lo + 8); // unaligned: not a pointer slot
        put(&mut page, 4088, lo + 0x40);
        page[300..313].copy_from_slice(b"TMR_REPLICA=1");
        let mut found = page.clone();
        let mut every = page.clone();
        let masker =
            Masker::new(&[b"TMR_REPLICA=1".to_vec(), b"TMR_ROUND=0".to_vec()], Some((lo, hi))).unwrap();
        masker.mask(&mut found, 0x5000);
        mask_pointer_words(&mut every, 0x5000, (lo, hi));
        every[300..313].fill(0);
        assert_eq!(found, every, "the search finds what the word-by-word scan finds, and the string");
        for at in [16, 64, 4088] {
            assert_eq!(&found[at..at + 8], &[0; 8], "word at {at}");
        }
        assert_eq!(&found[128..136], &hi.to_le_bytes());
        assert_eq!(&found[203..211], &(lo + 8).to_le_bytes());
    }

    #[test]
    fn replica_index_in_the_environment_is_blanked() {
        let mut page = b"PATH=/bin\0TMR_REPLICA=12\0X=1".to_vec();
        mask_env_value(&mut page, b"TMR_REPLICA=12");
        assert_eq!(&page[..], b"PATH=/bin\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0X=1");
    }

    /// Hash this very process and find a known buffer in the result: its pages carry exactly the digests
    /// of their bytes, at their addresses, and a page of zeros reads as the zero digest.
    #[test]
    fn our_own_memory_is_hashed_page_by_page_at_the_right_addresses() {
        use crate::memvote::{page_digest, zero_digest, PageDigest};
        let pages = 4;
        let mut buf = vec![0u8; (pages + 1) * PAGE as usize];
        let base = (buf.as_ptr() as u64).next_multiple_of(PAGE);
        let off = (base - buf.as_ptr() as u64) as usize;
        for p in 0..pages - 1 {
            buf[off + p * PAGE as usize..off + (p + 1) * PAGE as usize].fill(0xa0 + p as u8);
        }
        // The last page stays zeros.
        let h =
            hash_memory(nix::unistd::getpid(), &Masks { rsp: None, tid: None, replica_env: vec![] }).unwrap();
        let region = h.regions.iter().find(|r| r.start <= base && base < r.end).expect("the buffer's region");
        let digests: Vec<PageDigest> =
            region.pages().skip(((base - region.start) / PAGE) as usize).take(pages).collect();
        for (p, got) in digests.iter().enumerate().take(pages - 1) {
            assert_eq!(*got, page_digest(&[0xa0 + p as u8; PAGE as usize]), "page {p} of the buffer");
        }
        assert_eq!(digests[pages - 1], zero_digest());
        assert_eq!(region.page_count() as u64, (region.end - region.start) / PAGE);
        assert!(region.name == "[heap]" || region.name == "[anon]", "{}", region.name);
        assert!(h.bytes >= pages as u64 * PAGE && h.bytes % PAGE == 0, "{} bytes", h.bytes);
        std::hint::black_box(&buf);
    }
}
