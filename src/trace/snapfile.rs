//! The snapshot file a memory monitor hands tmr: its binary format and the mapped read. The page
//! digests (25,600 for a 100 MiB heap) and the pages that hold the pid travel as raw bytes, so tmr copies
//! them out instead of parsing hex. The rest of a `MemSnapshot` (notes, inputs, the injection,
//! checkpoints) is small, structured and still changing, so it travels as one JSON section. tmr creates
//! the file (`replica::capture::snapshot_file`: a memfd, it never touches a disk, and nothing needs
//! unlinking) and passes it to the monitor as fd 3; the monitor rewrites it whole while the replica is
//! held in a ptrace stop, and tmr reads it once, after the replica has been reaped.
//!
//! Layout, every integer a little-endian u64 unless said otherwise:
//! - header: `MAGIC` (8 bytes), version (u32) and zero (u32), then for each of the sections regions,
//!   units, runs, pid pages, strings and meta its (offset, count);
//! - regions: `REGION` bytes each: start, end, name offset and length in strings, first unit and unit
//!   count, first run and run count;
//! - units: 16 bytes each, a region's `PageDigests` units in order;
//! - runs: one u64 each, the index (within its region) of a unit that is a run;
//! - pid pages: the address, then the page's `PAGE` bytes;
//! - strings: the region names, UTF-8; meta: the JSON of the other fields.
//!
//! Reading checks every offset and count against the file's length before touching it, so a truncated
//! or corrupt file is an error naming what is wrong, never a panic, and nothing is allocated beyond what
//! the file itself holds.

use std::fs::File;
use std::io::{Seek, Write};

use anyhow::{bail, ensure, Context, Result};

use crate::memvote::{MemSnapshot, PageDigest, PageDigests, PidPage, Region, PAGE};

const MAGIC: &[u8; 8] = b"tmrsnap\0";
const VERSION: u32 = 1;
const SECTIONS: usize = 6;
const HEADER: usize = 16 + SECTIONS * 16;
const REGION: usize = 8 * 8;
const UNIT: usize = 16;
const RUN: usize = 8;
const PID_PAGE: usize = 8 + PAGE as usize;
/// Section numbers, in file order.
const S_REGIONS: usize = 0;
const S_UNITS: usize = 1;
const S_RUNS: usize = 2;
const S_PID_PAGES: usize = 3;
const S_STRINGS: usize = 4;
const S_META: usize = 5;
const NAMES: [&str; SECTIONS] = ["regions", "units", "runs", "pid pages", "strings", "meta"];
const SIZES: [usize; SECTIONS] = [REGION, UNIT, RUN, PID_PAGE, 1, 1];

/// Replace the file's contents with `snap`.
pub fn write(file: &mut File, snap: &MemSnapshot) -> std::io::Result<()> {
    let bytes = encode(snap);
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&bytes)
}

/// Read the snapshot a monitor left. `None` when the file is empty (the monitor never wrote one).
pub fn read(file: &File) -> Result<Option<MemSnapshot>> {
    let len = file.metadata().context("reading the snapshot file's size")?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the mapping is private to tmr and read-only; the only other writer, the replica's monitor,
    // has exited or is past its last write (tmr reads after reaping the replica, and the monitor writes
    // only while the replica is held). A change under the map could only yield wrong bytes, which
    // `decode` checks like any other content.
    let map = unsafe { memmap2::Mmap::map(file) }.context("mapping the snapshot file")?;
    decode(&map).map(Some)
}

fn put(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn encode(snap: &MemSnapshot) -> Vec<u8> {
    let meta = serde_json::to_vec(snap).unwrap_or_default();
    let units: usize = snap.regions.iter().map(|r| r.digests.units().len()).sum();
    let runs: usize = snap.regions.iter().map(|r| r.digests.runs().len()).sum();
    let strings: usize = snap.regions.iter().map(|r| r.name.len()).sum();
    let counts = [snap.regions.len(), units, runs, snap.pid_pages.len(), strings, meta.len()];
    let mut offsets = [0usize; SECTIONS];
    let mut at = HEADER;
    for s in 0..SECTIONS {
        offsets[s] = at;
        at += counts[s] * SIZES[s];
    }
    let mut out = Vec::with_capacity(at);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for s in 0..SECTIONS {
        put(&mut out, offsets[s] as u64);
        put(&mut out, counts[s] as u64);
    }
    let (mut unit, mut run, mut name) = (0, 0, 0);
    for r in &snap.regions {
        let (u, n) = (r.digests.units().len(), r.digests.runs().len());
        for v in [r.start, r.end, name, r.name.len() as u64, unit, u as u64, run, n as u64] {
            put(&mut out, v);
        }
        (unit, run, name) = (unit + u as u64, run + n as u64, name + r.name.len() as u64);
    }
    for r in &snap.regions {
        out.extend_from_slice(r.digests.as_bytes());
    }
    for r in &snap.regions {
        for &i in r.digests.runs() {
            put(&mut out, i);
        }
    }
    for p in &snap.pid_pages {
        put(&mut out, p.addr);
        // Always PAGE bytes: a record is fixed-size whatever the in-memory page holds.
        let page = &p.bytes[..p.bytes.len().min(PAGE as usize)];
        out.extend_from_slice(page);
        out.resize(out.len() + PAGE as usize - page.len(), 0);
    }
    for r in &snap.regions {
        out.extend_from_slice(r.name.as_bytes());
    }
    out.extend_from_slice(&meta);
    debug_assert_eq!(out.len(), at);
    out
}

/// The little-endian u64 at `at` (the caller has checked that 8 bytes are there).
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(v)
}

/// `count` items of `size` bytes from `first` within `within` (itself `what` items long), checked.
fn slice<'a>(within: &'a [u8], size: usize, first: u64, count: u64, what: &str) -> Result<&'a [u8]> {
    let total = within.len() / size;
    let end = first.checked_add(count).filter(|&e| e <= total as u64);
    let Some(end) = end else {
        bail!("{what} {first}..+{count} is past the {total} there are");
    };
    Ok(&within[first as usize * size..end as usize * size])
}

pub fn decode(bytes: &[u8]) -> Result<MemSnapshot> {
    ensure!(bytes.len() >= HEADER, "the snapshot file is {} bytes, shorter than its header", bytes.len());
    ensure!(&bytes[..8] == MAGIC, "the snapshot file does not start with tmr's magic bytes");
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    ensure!(version == VERSION, "snapshot file version {version}, this tmr reads version {VERSION}");
    let mut sections: [&[u8]; SECTIONS] = [&[]; SECTIONS];
    for (s, section) in sections.iter_mut().enumerate() {
        let (offset, count) = (u64_at(bytes, 16 + s * 16), u64_at(bytes, 24 + s * 16));
        let end = count.checked_mul(SIZES[s] as u64).and_then(|n| n.checked_add(offset));
        match end {
            Some(end) if offset >= HEADER as u64 && end <= bytes.len() as u64 => {
                *section = &bytes[offset as usize..end as usize];
            }
            _ => bail!(
                "the snapshot's {} section ({count} of {} bytes at offset {offset}) does not fit in its {} bytes",
                NAMES[s],
                SIZES[s],
                bytes.len()
            ),
        }
    }
    let mut snap: MemSnapshot =
        serde_json::from_slice(sections[S_META]).context("the snapshot's meta section is not valid JSON")?;
    let mut previous_end = 0;
    for (k, rec) in sections[S_REGIONS].chunks_exact(REGION).enumerate() {
        let f = |i: usize| u64_at(rec, 8 * i);
        let (start, end) = (f(0), f(1));
        // In address order, not overlapping, page-aligned, in a user address space (57 bits with
        // 5-level paging): the vote walks pages by address, so the bounds also bound its work.
        ensure!(
            previous_end <= start && start <= end && end <= 1 << 57 && start % PAGE == 0 && end % PAGE == 0,
            "region {k}: bounds {start:#x}..{end:#x} (the previous region ends at {previous_end:#x})"
        );
        previous_end = end;
        let name =
            slice(sections[S_STRINGS], 1, f(2), f(3), "name bytes").with_context(|| format!("region {k}"))?;
        let name = std::str::from_utf8(name).with_context(|| format!("region {k}: its name is not UTF-8"))?;
        let units =
            slice(sections[S_UNITS], UNIT, f(4), f(5), "units").with_context(|| format!("region {k}"))?;
        let units: Vec<PageDigest> =
            units.chunks_exact(UNIT).map(|u| u.try_into().expect("chunks of 16 bytes")).collect();
        let runs = slice(sections[S_RUNS], RUN, f(6), f(7), "runs").with_context(|| format!("region {k}"))?;
        let runs: Vec<u64> = runs.chunks_exact(RUN).map(|r| u64_at(r, 0)).collect();
        let digests = PageDigests::from_parts(units, runs).map_err(|e| anyhow::anyhow!("region {k}: {e}"))?;
        let pages = (end - start) / PAGE;
        ensure!(
            digests.page_count() == pages,
            "region {k} ({name}) has digests for {} pages, its bounds hold {pages}",
            digests.page_count()
        );
        snap.regions.push(Region { name: name.to_string(), start, end, digests });
    }
    snap.pid_pages = sections[S_PID_PAGES]
        .chunks_exact(PID_PAGE)
        .map(|p| PidPage { addr: u64_at(p, 0), bytes: p[8..].to_vec() })
        .collect();
    Ok(snap)
}

/// What tmr records for a replica whose snapshot file could not be read.
pub fn unreadable(e: &anyhow::Error) -> MemSnapshot {
    let why = format!("the monitor's snapshot could not be read: {e:#}");
    MemSnapshot { unavailable: Some(why.clone()), inject_error: Some(why), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memvote::{Digests, InputStats, KindStats};
    use proptest::prelude::*;

    /// A page as the monitor sees it: zeros, unreadable, zeros known unread, or data.
    #[derive(Debug, Clone)]
    enum Page {
        Zero,
        Unreadable,
        Unread(usize),
        Data(u8),
    }

    fn page() -> impl Strategy<Value = Page> {
        prop_oneof![
            Just(Page::Zero),
            Just(Page::Unreadable),
            (1usize..100_000).prop_map(Page::Unread),
            any::<u8>().prop_map(Page::Data),
        ]
    }

    fn region(name: String, start: u64, pages: &[Page]) -> Region {
        let mut d = Digests::default();
        for p in pages {
            match p {
                Page::Zero => d.push_page(&[0; PAGE as usize]),
                Page::Unreadable => d.push_unreadable(),
                Page::Unread(n) => d.push_zeros(*n),
                Page::Data(b) => d.push_page(&[*b; PAGE as usize]),
            }
        }
        let digests = d.finish();
        let end = start + digests.page_count() * PAGE;
        Region { name, start, end, digests }
    }

    fn snapshot() -> impl Strategy<Value = MemSnapshot> {
        let regions =
            prop::collection::vec(("[a-z/\\[\\] .é]{0,12}", prop::collection::vec(page(), 0..12)), 0..5);
        let pid_pages = prop::collection::vec((any::<u64>(), any::<u8>()), 0..3);
        let notes = prop::collection::vec(".{0,20}", 0..3);
        (regions, pid_pages, notes, any::<Option<u32>>(), any::<u64>(), prop::option::of(".{0,10}")).prop_map(
            |(regions, pid_pages, notes, pid, bytes, unavailable)| MemSnapshot {
                regions: regions
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, pages))| region(name, (i as u64 + 1) << 40, &pages))
                    .collect(),
                pid_pages: pid_pages
                    .into_iter()
                    .map(|(addr, b)| PidPage { addr, bytes: vec![b; PAGE as usize] })
                    .collect(),
                notes,
                pid,
                bytes,
                unavailable,
                threads: 1,
                cost_ms: 1.5,
                pid_pages_from: pid.map(u64::from),
                inputs: Some(InputStats {
                    kinds: vec![KindStats {
                        kind: "clock".into(),
                        asked: 3,
                        sequence: "ab".into(),
                        ..Default::default()
                    }],
                    mismatch: None,
                }),
                ..Default::default()
            },
        )
    }

    proptest! {
        #[test]
        fn a_snapshot_round_trips(snap in snapshot()) {
            prop_assert_eq!(decode(&encode(&snap)).unwrap(), snap);
        }

        /// Every prefix shorter than the whole, and any byte changed, is an error or a snapshot, never a
        /// panic (a changed digest byte is still a valid file: only the structure is checked).
        #[test]
        fn a_damaged_file_is_an_error_not_a_panic(snap in snapshot(), cut in any::<prop::sample::Index>(),
                                                  at in any::<prop::sample::Index>(), x in 1u8..) {
            let bytes = encode(&snap);
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err(), "a file cut at {} of {} bytes", cut, bytes.len());
            let mut flipped = bytes.clone();
            flipped[at.index(bytes.len())] ^= x;
            let _ = decode(&flipped);
        }
    }

    #[test]
    fn damaged_headers_say_what_is_wrong() {
        let snap = MemSnapshot {
            regions: vec![region("[heap]".into(), 0x1000, &[Page::Data(1), Page::Unread(3)])],
            ..Default::default()
        };
        let bytes = encode(&snap);
        let err = |b: &[u8]| format!("{:#}", decode(b).unwrap_err());
        assert!(err(&bytes[..10]).contains("shorter than its header"), "{}", err(&bytes[..10]));
        let mut b = bytes.clone();
        b[0] = b'X';
        assert!(err(&b).contains("magic"), "{}", err(&b));
        let mut b = bytes.clone();
        b[8] = 9;
        assert!(err(&b).contains("version 9"), "{}", err(&b));
        // A huge unit count: refused before anything is allocated, and without overflow.
        let mut b = bytes.clone();
        b[16 + S_UNITS * 16 + 8..16 + S_UNITS * 16 + 16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(err(&b).contains("units section"), "{}", err(&b));
        // A region that claims more units than there are.
        let mut b = bytes.clone();
        let units_count = HEADER + 5 * 8;
        b[units_count..units_count + 8].copy_from_slice(&3u64.to_le_bytes());
        assert!(err(&b).contains("region 0: units 0..+3 is past the 2 there are"), "{}", err(&b));
        // Bounds out of order with the previous region's, or beyond any address space.
        let two = MemSnapshot {
            regions: vec![
                region("[heap]".into(), 0x10000, &[Page::Data(1)]),
                region("[stack]".into(), 0x20000, &[Page::Data(2)]),
            ],
            ..Default::default()
        };
        let mut b = encode(&two);
        b[HEADER + REGION..HEADER + REGION + 8].copy_from_slice(&0x8000u64.to_le_bytes());
        b[HEADER + REGION + 8..HEADER + REGION + 16].copy_from_slice(&0x9000u64.to_le_bytes());
        let want = "region 1: bounds 0x8000..0x9000 (the previous region ends at 0x11000)";
        assert!(err(&b).contains(want), "{}", err(&b));
        let mut b = bytes.clone();
        b[HEADER + 8..HEADER + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&b).contains("region 0: bounds"), "{}", err(&b));
        // Bounds that disagree with the digests.
        let mut b = bytes;
        b[HEADER + 8..HEADER + 16].copy_from_slice(&0x3000u64.to_le_bytes());
        assert!(err(&b).contains("digests for 4 pages, its bounds hold 2"), "{}", err(&b));
    }

    #[test]
    fn the_file_is_a_memfd_and_reads_back_what_was_written() {
        let mut f = crate::replica::capture::snapshot_file().unwrap();
        assert_eq!(read(&f).unwrap(), None, "an empty file is no snapshot");
        let snap = MemSnapshot {
            regions: vec![region("[stack]".into(), 0x7000, &[Page::Data(9), Page::Zero])],
            notes: vec!["first".into()],
            ..Default::default()
        };
        write(&mut f, &MemSnapshot { notes: vec!["a longer note that is replaced".into()], ..snap.clone() })
            .unwrap();
        write(&mut f, &snap).unwrap();
        assert_eq!(read(&f).unwrap(), Some(snap));
        let link =
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f))).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:tmr-snapshot"), "{link:?}");
    }
}
