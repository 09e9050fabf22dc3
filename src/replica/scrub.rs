//! Repair in place at an epoch vote (`--recover scrub`, issue 12 item 4), inside the tracers, as ECC
//! scrubbing rewrites a bad word from its good copy instead of restarting the machine.
//!
//! - **The donor.** When the epoch digests have a strict majority and some replica's digest is outside
//!   it, the lowest-numbered replica of the majority writes a *donation* beside the epoch file: every page
//!   term it holds (the whole memory's, not only this epoch's: a flip may hit a page the majority has not
//!   written for a long time), and the masked bytes of the pages it wrote in this epoch, at most
//!   [`MAX_SCRUB_PAGES`] (past that it writes none and says so: the outvoted replica is rolled back).
//! - **The outvoted replica** compares the donor's terms with its own. A page the donor wrote in this
//!   epoch is copied from the donation; any other differing page holds, in the majority, what it held at
//!   the last good checkpoint, which this replica keeps as a stopped fork of itself: it is copied from
//!   there (its own bytes, with its own pid and `TMR_*` strings). Bytes this replica's masks blank (its
//!   pid, its `TMR_*` strings, dead stack) keep its own values. The pages are written with
//!   process_vm_writev, rehashed, and the repair counts only if the new digest is the majority's; the
//!   replica then takes its checkpoint as the majority did and runs on, not a single instruction re-run.
//! - **What falls back to the rollback:** the registers' term differs (instruction pointer or system
//!   call: its control flow is elsewhere), its output held this epoch differs in length from the
//!   donor's, a needed page is in neither source, the donor refused or did not come in time, the digests
//!   had no majority before noise was sorted out, or the rehash still differs.
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

const MAGIC: &[u8; 8] = b"tmrscrb1";
/// The registers' term's address in a term list (as in `EpochSync::reconcile`).
pub const REGS: u64 = u64::MAX;

/// What the donor publishes: its page terms (the registers' under [`REGS`]), the masked bytes of the
/// pages it wrote in the epoch, and the bytes of output it held in the epoch.
#[derive(Debug, Default, PartialEq)]
pub struct Donation {
    pub terms: HashMap<u64, Digest>,
    pub pages: HashMap<u64, Vec<u8>>,
    pub held: u64,
}

impl Donation {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.terms.len() * 40 + self.pages.len() * (8 + PAGE as usize));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.held.to_le_bytes());
        b.extend_from_slice(&(self.terms.len() as u64).to_le_bytes());
        for (a, t) in &self.terms {
            b.extend_from_slice(&a.to_le_bytes());
            for w in t {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
        b.extend_from_slice(&(self.pages.len() as u64).to_le_bytes());
        for (a, p) in &self.pages {
            b.extend_from_slice(&a.to_le_bytes());
            b.extend_from_slice(p);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Donation> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = b.get(at..at + n).context("a truncated donation")?;
            at += n;
            Ok(s)
        };
        if take(8)? != MAGIC {
            bail!("not a donation");
        }
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let held = word(take(8)?);
        let nterms = word(take(8)?);
        let mut terms = HashMap::new();
        for _ in 0..nterms {
            let a = word(take(8)?);
            let mut t = [0u64; 4];
            for w in &mut t {
                *w = word(take(8)?);
            }
            terms.insert(a, t);
        }
        let npages = word(take(8)?);
        if npages > MAX_SCRUB_PAGES as u64 {
            bail!("a donation of {npages} pages");
        }
        let mut pages = HashMap::new();
        for _ in 0..npages {
            let a = word(take(8)?);
            pages.insert(a, take(PAGE as usize)?.to_vec());
        }
        Ok(Donation { terms, pages, held })
    }
}

/// The donor of a vote: the lowest-numbered replica with the majority digest, and whether anybody
/// published another digest (then a donation is wanted).
pub fn donor(digests: &[Option<Digest>]) -> Option<(usize, bool)> {
    let need = digests.len() / 2 + 1;
    let majority =
        digests.iter().flatten().find(|d| digests.iter().flatten().filter(|e| e == d).count() >= need)?;
    let first = digests.iter().position(|d| d.as_ref() == Some(majority))?;
    let dissent = digests.iter().flatten().any(|d| d != majority);
    Some((first, dissent))
}

/// The majority digest, if there is one.
pub fn majority(digests: &[Option<Digest>]) -> Option<Digest> {
    donor(digests).and_then(|(i, _)| digests[i])
}

/// The pages on which `mine` (with `my_regs`) differs from the donor's terms; an error when the
/// registers' terms differ (a repair of pages cannot move the control flow).
pub fn differing(mine: &HashMap<u64, Digest>, my_regs: Digest, donor: &Donation) -> Result<Vec<u64>, String> {
    if donor.terms.get(&REGS) != Some(&my_regs) {
        return Err("its registers differ from the majority's (instruction pointer or system call)".into());
    }
    let addrs: BTreeSet<u64> =
        mine.keys().chain(donor.terms.keys()).copied().filter(|&a| a != REGS).collect();
    Ok(addrs.into_iter().filter(|a| mine.get(a) != donor.terms.get(a)).collect())
}

/// The repaired page: the donor's masked bytes, except where this replica's own masks blanked a byte
/// (`raw` differs from `masked` there), which keeps its own value (its pid, its `TMR_*` strings).
pub fn merge(raw: &[u8], masked: &[u8], donor: &[u8]) -> Vec<u8> {
    raw.iter().zip(masked).zip(donor).map(|((&r, &m), &d)| if r != m { r } else { d }).collect()
}

/// The donor's side: write the donation for epoch `k` to `path` (its terms, `regs`, the pages of `pid`
/// written this epoch, masked). Returns false when it refused (too many pages).
pub fn donate(
    path: &std::path::Path,
    pid: Pid,
    terms: &HashMap<u64, Digest>,
    regs: Digest,
    written: &[u64],
    masks: &PageMasks,
    held: u64,
) -> Result<bool> {
    if written.len() > MAX_SCRUB_PAGES {
        return Ok(false);
    }
    let names = mapping_names(pid)?;
    let mut d = Donation { terms: terms.clone(), pages: HashMap::new(), held };
    d.terms.insert(REGS, regs);
    for &a in written {
        let mut page = vec![0u8; PAGE as usize];
        read_remote_exact(pid, a, &mut page).with_context(|| format!("reading page {a:#x}"))?;
        mask_page(&mut page, a, name_of(&names, a), masks);
        d.pages.insert(a, page);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, d.encode()).context("writing the donation")?;
    std::fs::rename(&tmp, path).context("publishing the donation")?;
    Ok(true)
}

/// The outvoted replica's side: copy the differing pages into `pid` (from the donation, or from `kept`,
/// its last good checkpoint). Returns the pages written, for the caller to rehash; an error says why
/// it could not be repaired (then it is rolled back).
pub fn repair(
    pid: Pid,
    kept: Option<Pid>,
    pages: &[u64],
    donor: &Donation,
    masks: &PageMasks,
) -> Result<Vec<u64>, String> {
    if pages.len() > MAX_SCRUB_PAGES {
        return Err(format!("{} pages differ, more than {MAX_SCRUB_PAGES}", pages.len()));
    }
    let names = mapping_names(pid).map_err(|e| format!("{e:#}"))?;
    let mut repaired = Vec::with_capacity(pages.len());
    for &a in pages {
        let mut raw = vec![0u8; PAGE as usize];
        read_remote_exact(pid, a, &mut raw).map_err(|_| format!("page {a:#x} is not mapped in it"))?;
        let bytes = match (donor.pages.get(&a), kept) {
            (Some(d), _) => {
                let mut masked = raw.clone();
                mask_page(&mut masked, a, name_of(&names, a), masks);
                merge(&raw, &masked, d)
            }
            (None, Some(k)) => {
                let mut old = vec![0u8; PAGE as usize];
                read_remote_exact(k, a, &mut old)
                    .map_err(|_| format!("page {a:#x} was not mapped at the last good checkpoint"))?;
                old
            }
            (None, None) => return Err(format!("page {a:#x} differs and no good checkpoint holds it")),
        };
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
    fn a_donation_round_trips_and_a_truncated_one_is_refused() {
        let mut d = Donation { held: 7, ..Default::default() };
        d.terms.insert(0x1000, [1, 2, 3, 4]);
        d.terms.insert(REGS, [5, 6, 7, 8]);
        d.pages.insert(0x1000, vec![9u8; PAGE as usize]);
        let b = d.encode();
        assert_eq!(Donation::decode(&b).expect("decodes"), d);
        assert!(Donation::decode(&b[..b.len() - 1]).is_err());
        assert!(Donation::decode(b"garbage!").is_err());
    }

    #[test]
    fn the_donor_is_the_first_of_the_majority_and_is_wanted_only_for_a_dissent() {
        let (a, b) = ([1u64; 4], [2u64; 4]);
        assert_eq!(donor(&[Some(b), Some(a), Some(a)]), Some((1, true)));
        assert_eq!(donor(&[Some(a), Some(a), None]), Some((0, false)), "a late digest is no dissent");
        assert_eq!(donor(&[Some(a), Some(b), Some([3; 4])]), None);
        assert_eq!(majority(&[Some(b), Some(a), Some(a)]), Some(a));
    }

    #[test]
    fn differing_pages_are_those_whose_terms_differ_or_exist_on_one_side_only() {
        let mut d = Donation::default();
        d.terms.insert(REGS, [9; 4]);
        d.terms.insert(0x1000, [1; 4]);
        d.terms.insert(0x2000, [2; 4]);
        let mine: HashMap<u64, Digest> = [(0x1000, [1; 4]), (0x2000, [7; 4]), (0x3000, [3; 4])].into();
        assert_eq!(differing(&mine, [9; 4], &d), Ok(vec![0x2000, 0x3000]));
        assert!(differing(&mine, [8; 4], &d).is_err_and(|e| e.contains("registers")));
    }

    #[test]
    fn a_merged_page_keeps_the_bytes_its_own_masks_blank() {
        let raw = [1u8, 42, 3, 4];
        let masked = [1u8, 0, 3, 4]; // its pid at byte 1
        let donor = [1u8, 0, 9, 4]; // the donor's pid blanked too; byte 2 was flipped in this replica
        assert_eq!(merge(&raw, &masked, &donor), vec![1, 42, 9, 4]);
    }
}
