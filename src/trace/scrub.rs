//! Repair in place at an epoch vote (`--recover scrub`, issue 12 item 4), inside the tracers, as ECC
//! scrubbing rewrites a bad word from its good copy instead of restarting the machine.
//!
//! When the epoch digests have a strict majority and some replica's digest is outside it:
//! - **the outvoted replica** publishes its *want*: every page term it holds (the whole memory's, not
//!   only this epoch's: a flip may hit a page nobody wrote for a long time), its registers' term and the
//!   bytes of output it held in the epoch, and waits (bounded) for the donation;
//! - **the donor**, the lowest-numbered replica of the majority, reads each dissenter's want, finds the
//!   pages whose terms differ from its own, and publishes their masked bytes (a page it does not have is
//!   marked absent), at most [`MAX_SCRUB_PAGES`]; past that it refuses;
//! - **the outvoted replica** writes the donated pages into itself with process_vm_writev; bytes its own
//!   masks blank (its pid, its `TMR_*` strings, dead stack) keep its own values. It rehashes them, and the
//!   repair counts only if its digest is now the majority's: it then takes its checkpoint as the majority
//!   did and runs on, not a single instruction re-run.
//!
//! What falls back to the rollback: the registers' term differs (instruction pointer or system call:
//! its control flow is elsewhere), its output held in the epoch differs in length from the donor's, a
//! differing page is absent in the donor, the donor refused or did not come in time, the digests had no
//! majority before noise was sorted out, or the rehash still differs. Each such case is logged with why.
//!
//! Limits: registers other than the instruction pointer are not voted at epochs, so not repaired; the
//! output of the epoch is compared by length only (a same-length wrong byte is outvoted by tmr's stream
//! and exit vote, not repaired).

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;

use super::epochvote::{mask_page, Digest, PageMasks};
use super::memsnap::writable_mappings;
use super::remote::{read_remote_exact, write_remote};
pub use crate::epoch::MAX_SCRUB_PAGES;
use crate::memvote::PAGE;

const WANT: &[u8; 8] = b"tmrwant1";
const GIFT: &[u8; 8] = b"tmrgift1";
/// The registers' term's address in a term list (as in `EpochSync::reconcile`).
pub const REGS: u64 = u64::MAX;

/// What an outvoted replica publishes: its page terms (the registers' under [`REGS`]) and the bytes of
/// output it held in the epoch.
#[derive(Debug, Default, PartialEq)]
pub struct Want {
    pub terms: HashMap<u64, Digest>,
    pub held: u64,
}

/// What the donor publishes for one outvoted replica: its registers' term, its digest (noise left
/// out: what the repaired replica's must equal), its held output, and the masked bytes of each page
/// that differs (None: the donor has no such page).
#[derive(Debug, Default, PartialEq)]
pub struct Donation {
    pub regs: Digest,
    pub digest: Digest,
    pub held: u64,
    pub pages: Vec<(u64, Option<Vec<u8>>)>,
    /// The donor's general-purpose registers ([`GPRS`] order) and its pid (a register holding it is
    /// not copied).
    pub gprs: [u64; GPRS],
    pub pid: u64,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n).context("a truncated scrub file")?;
        self.at += n;
        Ok(s)
    }
    fn word(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn digest(&mut self) -> Result<Digest> {
        Ok([self.word()?, self.word()?, self.word()?, self.word()?])
    }
}

fn put_digest(b: &mut Vec<u8>, d: &Digest) {
    for w in d {
        b.extend_from_slice(&w.to_le_bytes());
    }
}

impl Want {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24 + self.terms.len() * 40);
        b.extend_from_slice(WANT);
        b.extend_from_slice(&self.held.to_le_bytes());
        b.extend_from_slice(&(self.terms.len() as u64).to_le_bytes());
        for (a, t) in &self.terms {
            b.extend_from_slice(&a.to_le_bytes());
            put_digest(&mut b, t);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Want> {
        let mut r = Reader { b, at: 0 };
        if r.take(8)? != WANT {
            bail!("not a want");
        }
        let held = r.word()?;
        let n = r.word()?;
        let mut terms = HashMap::new();
        for _ in 0..n {
            let a = r.word()?;
            terms.insert(a, r.digest()?);
        }
        Ok(Want { terms, held })
    }
}

impl Donation {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(56 + self.pages.len() * (9 + PAGE as usize));
        b.extend_from_slice(GIFT);
        put_digest(&mut b, &self.regs);
        put_digest(&mut b, &self.digest);
        for w in self.gprs.iter().chain([&self.pid]) {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&self.held.to_le_bytes());
        b.extend_from_slice(&(self.pages.len() as u64).to_le_bytes());
        for (a, p) in &self.pages {
            b.extend_from_slice(&a.to_le_bytes());
            match p {
                Some(p) => {
                    b.push(1);
                    b.extend_from_slice(p);
                }
                None => b.push(0),
            }
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Donation> {
        let mut r = Reader { b, at: 0 };
        if r.take(8)? != GIFT {
            bail!("not a donation");
        }
        let regs = r.digest()?;
        let digest = r.digest()?;
        let mut gprs = [0u64; GPRS];
        for g in &mut gprs {
            *g = r.word()?;
        }
        let pid = r.word()?;
        let held = r.word()?;
        let n = r.word()?;
        if n > MAX_SCRUB_PAGES as u64 {
            bail!("a donation of {n} pages");
        }
        let mut pages = Vec::new();
        for _ in 0..n {
            let a = r.word()?;
            let page = match r.take(1)?[0] {
                0 => None,
                _ => Some(r.take(PAGE as usize)?.to_vec()),
            };
            pages.push((a, page));
        }
        Ok(Donation { regs, digest, held, pages, gprs, pid })
    }
}

/// The donor of a vote: the lowest-numbered replica with the majority digest, and the replicas that
/// published another digest (the ones to donate to).
pub fn donor(digests: &[Option<Digest>]) -> Option<(usize, Vec<usize>)> {
    let need = digests.len() / 2 + 1;
    let present = || digests.iter().flatten();
    let majority = present().find(|d| present().filter(|e| e == d).count() >= need)?;
    let first = digests.iter().position(|d| d.as_ref() == Some(majority))?;
    let dissent = (0..digests.len()).filter(|&j| digests[j].is_some_and(|d| d != *majority)).collect();
    Some((first, dissent))
}

/// The pages on which two term lists differ (a page on one side only included; registers left out).
pub fn differing(a: &HashMap<u64, Digest>, b: &HashMap<u64, Digest>) -> Vec<u64> {
    let addrs: BTreeSet<u64> = a.keys().chain(b.keys()).copied().filter(|&x| x != REGS).collect();
    addrs.into_iter().filter(|x| a.get(x) != b.get(x)).collect()
}

/// General-purpose registers a repair copies: all but the instruction pointer, the system call (equal, or
/// no repair), rax (-ENOSYS at a syscall entry) and the segment registers and bases (equal without ASLR).
pub const GPRS: usize = 16;

fn slots(r: &mut libc::user_regs_struct) -> [&mut u64; GPRS] {
    [
        &mut r.r15,
        &mut r.r14,
        &mut r.r13,
        &mut r.r12,
        &mut r.rbp,
        &mut r.rbx,
        &mut r.r11,
        &mut r.r10,
        &mut r.r9,
        &mut r.r8,
        &mut r.rcx,
        &mut r.rdx,
        &mut r.rsi,
        &mut r.rdi,
        &mut r.rsp,
        &mut r.eflags,
    ]
}

/// The registers a donation carries.
pub fn gprs(r: &libc::user_regs_struct) -> [u64; GPRS] {
    let mut r = *r;
    let s = slots(&mut r);
    std::array::from_fn(|i| *s[i])
}

/// Copy the donor's registers into `mine` where they differ, except a register that holds either
/// replica's own pid (a getpid answer, a kill argument: each replica's own). Returns how many changed.
pub fn repair_registers(mine: &mut libc::user_regs_struct, my_pid: u64, donation: &Donation) -> usize {
    let mut changed = 0;
    for (slot, &theirs) in slots(mine).into_iter().zip(&donation.gprs) {
        if *slot != theirs && *slot != my_pid && theirs != donation.pid {
            *slot = theirs;
            changed += 1;
        }
    }
    changed
}

/// The repaired page: the donor's masked bytes, except where this replica's own masks blanked a byte
/// (`raw` differs from `masked` there), which keeps its own value (its pid, its `TMR_*` strings).
pub fn merge(raw: &[u8], masked: &[u8], donor: &[u8]) -> Vec<u8> {
    raw.iter().zip(masked).zip(donor).map(|((&r, &m), &d)| if r != m { r } else { d }).collect()
}

/// Write `bytes` to `path` whole: a reader never sees half a file.
pub fn publish(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("publishing {}", path.display()))
}

/// The donor's side, for one dissenter's `want`: the differing pages of `pid`, masked. An error when
/// more than [`MAX_SCRUB_PAGES`] differ.
pub fn donation(
    pid: Pid,
    mine: &HashMap<u64, Digest>,
    (regs, digest): (Digest, Digest),
    gp: &libc::user_regs_struct,
    held: u64,
    want: &Want,
    masks: &PageMasks,
) -> Result<Donation> {
    let pages = differing(mine, &want.terms);
    if pages.len() > MAX_SCRUB_PAGES {
        bail!("{} pages differ, more than {MAX_SCRUB_PAGES}", pages.len());
    }
    let names = mapping_names(pid)?;
    let mut d = Donation {
        regs,
        digest,
        held,
        pages: Vec::with_capacity(pages.len()),
        gprs: gprs(gp),
        pid: pid.as_raw() as u64,
    };
    for a in pages {
        let mut page = vec![0u8; PAGE as usize];
        let got = read_remote_exact(pid, a, &mut page).is_ok();
        if got {
            mask_page(&mut page, a, name_of(&names, a), masks);
        }
        d.pages.push((a, got.then_some(page)));
    }
    Ok(d)
}

/// The outvoted replica's side: write the donated pages into `pid`. Returns the pages written, for
/// the caller to rehash; an error says why it could not be repaired (then it is rolled back).
pub fn repair(pid: Pid, donation: &Donation, masks: &PageMasks) -> Result<Vec<u64>, String> {
    let names = mapping_names(pid).map_err(|e| format!("{e:#}"))?;
    let mut repaired = Vec::with_capacity(donation.pages.len());
    for (a, page) in &donation.pages {
        let a = *a;
        let Some(donor) = page else {
            return Err(format!("page {a:#x} differs and the majority has no such page"));
        };
        let mut raw = vec![0u8; PAGE as usize];
        read_remote_exact(pid, a, &mut raw).map_err(|_| format!("page {a:#x} is not mapped in it"))?;
        let mut masked = raw.clone();
        mask_page(&mut masked, a, name_of(&names, a), masks);
        let bytes = merge(&raw, &masked, donor);
        if bytes != raw {
            write_remote(pid, a, &bytes).map_err(|e| format!("writing page {a:#x}: {e:#}"))?;
        }
        repaired.push(a);
    }
    Ok(repaired)
}

/// Rehash `pages` of `pid` into `digests` (masked as the vote masks them).
pub fn rehash(
    pid: Pid,
    pages: &[u64],
    masks: &PageMasks,
    digests: &mut super::epochvote::PageDigests,
) -> Result<()> {
    let names = mapping_names(pid)?;
    for &a in pages {
        let mut page = vec![0u8; PAGE as usize];
        read_remote_exact(pid, a, &mut page)?;
        mask_page(&mut page, a, name_of(&names, a), masks);
        digests.set(a, &page);
    }
    Ok(())
}

fn mapping_names(pid: Pid) -> Result<Vec<(u64, u64, String)>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("reading maps")?;
    Ok(writable_mappings(&maps).into_iter().map(|m| (m.start, m.end, m.name)).collect())
}

fn name_of(names: &[(u64, u64, String)], a: u64) -> &str {
    names.iter().find(|(s, e, _)| (*s..*e).contains(&a)).map_or("[anon]", |(_, _, n)| n.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_and_donations_round_trip_and_truncated_ones_are_refused() {
        let mut w = Want { held: 7, ..Default::default() };
        w.terms.insert(0x1000, [1, 2, 3, 4]);
        w.terms.insert(REGS, [5, 6, 7, 8]);
        let b = w.encode();
        assert_eq!(Want::decode(&b).expect("decodes"), w);
        assert!(Want::decode(&b[..b.len() - 1]).is_err());
        let d = Donation {
            regs: [1; 4],
            digest: [2; 4],
            gprs: [5; GPRS],
            pid: 77,
            held: 3,
            pages: vec![(0x1000, Some(vec![9u8; PAGE as usize])), (0x2000, None)],
        };
        let b = d.encode();
        assert_eq!(Donation::decode(&b).expect("decodes"), d);
        assert!(Donation::decode(&b[..b.len() - 1]).is_err());
        assert!(Donation::decode(b"garbage!").is_err());
    }

    #[test]
    fn the_donor_is_the_first_of_the_majority_and_donates_to_each_dissenter() {
        let (a, b) = ([1u64; 4], [2u64; 4]);
        assert_eq!(donor(&[Some(b), Some(a), Some(a)]), Some((1, vec![0])));
        assert_eq!(donor(&[Some(a), Some(a), None]), Some((0, vec![])), "a late digest is no dissent");
        assert_eq!(donor(&[Some(a), Some(b), Some([3; 4])]), None);
        assert_eq!(donor(&[Some(a), Some(b), Some(a), Some([3; 4]), Some(a)]), Some((0, vec![1, 3])));
    }

    #[test]
    fn differing_pages_are_those_whose_terms_differ_or_exist_on_one_side_only() {
        let a: HashMap<u64, Digest> = [(REGS, [9; 4]), (0x1000, [1; 4]), (0x2000, [2; 4])].into();
        let b: HashMap<u64, Digest> =
            [(REGS, [8; 4]), (0x1000, [1; 4]), (0x2000, [7; 4]), (0x3000, [3; 4])].into();
        assert_eq!(differing(&a, &b), vec![0x2000, 0x3000]);
    }

    #[test]
    fn registers_are_copied_where_they_differ_except_a_pid() {
        // SAFETY: user_regs_struct is plain integers; all zeros is a valid value.
        let zero: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        let mut donor = zero;
        (donor.rbx, donor.rdi, donor.rip) = (7, 100, 0x1234);
        let d = Donation { gprs: gprs(&donor), pid: 100, ..Default::default() };
        let mut mine = zero;
        (mine.rbx, mine.rdi, mine.r12) = (9, 200, 0);
        assert_eq!(repair_registers(&mut mine, 200, &d), 1);
        assert_eq!((mine.rbx, mine.rdi, mine.rip), (7, 200, 0), "its own pid stays; rip is not copied");
    }

    #[test]
    fn a_merged_page_keeps_the_bytes_its_own_masks_blank() {
        let raw = [1u8, 42, 3, 4];
        let masked = [1u8, 0, 3, 4]; // its pid at byte 1
        let donor = [1u8, 0, 9, 4]; // the donor's pid blanked too; byte 2 was flipped in this replica
        assert_eq!(merge(&raw, &masked, &donor), vec![1, 42, 9, 4]);
    }
}
