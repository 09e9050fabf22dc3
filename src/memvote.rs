//! Memory-state voting, the pure half: each replica's exit-time snapshot is a list of writable regions
//! with one digest per 4 KiB page; pages are voted address by address. A page where a strict majority
//! agrees and a minority differs is a *divergence* of that minority (latent corruption that may never
//! reach the output); a page with no majority is *noise* — counted and listed, because every noise page
//! is a blind spot. No processes here: snapshots come from the per-replica monitor (`replica::monitor`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const PAGE: u64 = 4096;

/// What one replica's monitor saw at its exit stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemSnapshot {
    pub regions: Vec<Region>,
    /// Threads seen over the replica's life (clone events + 1).
    pub threads: usize,
    /// Determinization that did not apply, and other caveats.
    pub notes: Vec<String>,
    /// Why no snapshot could be taken (ptrace refused, exit stop missed); outputs are still voted.
    pub unavailable: Option<String>,
    /// Bytes read and hashed, and the time it took inside the monitor.
    pub bytes: u64,
    pub cost_ms: f64,
    /// The fault injected into this replica (`--inject`), or why it could not be.
    #[serde(default)]
    pub injected: Option<crate::inject::Injected>,
    #[serde(default)]
    pub inject_error: Option<String>,
}

/// One writable private mapping. `digests` holds one 32-hex-digit digest (a 128-bit blake3 prefix) per
/// page, concatenated: one string per region instead of one per page keeps a 100 MiB snapshot cheap to
/// build, ship and parse. An unreadable page has the digest [`UNREADABLE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub name: String,
    pub start: u64,
    pub end: u64,
    pub digests: String,
}

/// Hex digits per page digest.
pub const DIGEST_HEX: usize = 32;
pub const UNREADABLE: &str = "--------------------------------";

impl Region {
    pub fn pages(&self) -> impl Iterator<Item = &str> {
        self.digests.as_bytes().chunks(DIGEST_HEX).map(|c| std::str::from_utf8(c).unwrap_or(UNREADABLE))
    }

    pub fn page_count(&self) -> usize {
        self.digests.len() / DIGEST_HEX
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageDivergence {
    pub replica: usize,
    pub region: String,
    pub region_start: u64,
    pub region_end: u64,
    pub addr: u64,
    /// Page index within the region.
    pub page: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoisePage {
    pub region: String,
    pub addr: u64,
    /// How many distinct values the replicas had for it.
    pub distinct: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemVerdict {
    pub pages_compared: usize,
    pub divergent: Vec<PageDivergence>,
    pub noise: Vec<NoisePage>,
    /// Per replica: a digest of its divergent pages, equal for every replica that agrees with the
    /// page-majority everywhere, so memory can join the fingerprint without noise pages breaking ties.
    #[serde(skip)]
    pub keys: Vec<[u8; 32]>,
}

/// One replica's view of one page: digest, region name, region start and end.
type PageSeen<'a> = (&'a str, &'a str, u64, u64);

/// Vote page by page across replicas. `None` snapshots (memory voting unavailable for that replica)
/// take no part; a page missing from a replica counts as a different value.
pub fn vote_pages(snaps: &[Option<&MemSnapshot>]) -> MemVerdict {
    // addr -> per-replica (digest, region name, region bounds)
    let mut pages: BTreeMap<u64, Vec<Option<PageSeen>>> = BTreeMap::new();
    let n = snaps.len();
    for (i, snap) in snaps.iter().enumerate() {
        let Some(snap) = snap else { continue };
        for r in &snap.regions {
            for (p, digest) in r.pages().enumerate() {
                let addr = r.start + p as u64 * PAGE;
                let slot = pages.entry(addr).or_insert_with(|| vec![None; n]);
                slot[i] = Some((digest, r.name.as_str(), r.start, r.end));
            }
        }
    }
    let voters: Vec<usize> = (0..n).filter(|&i| snaps[i].is_some()).collect();
    let mut divergent = Vec::new();
    let mut noise = Vec::new();
    let mut per_replica: Vec<blake3::Hasher> = (0..n).map(|_| blake3::Hasher::new()).collect();
    for (addr, values) in &pages {
        let keys: Vec<Option<&str>> = voters.iter().map(|&i| values[i].map(|v| v.0)).collect();
        let v = crate::vote::vote(&keys);
        let (name, start, end) =
            values.iter().flatten().map(|v| (v.1, v.2, v.3)).next().expect("a page seen by someone");
        match v.majority() {
            // Most replicas lack the page: a layout difference, not corruption of the one that has it.
            Some(g) if g.key.is_none() => {
                noise.push(NoisePage { region: name.to_string(), addr: *addr, distinct: v.groups.len() })
            }
            Some(g) => {
                for (j, &i) in voters.iter().enumerate() {
                    if keys[j] != g.key {
                        divergent.push(PageDivergence {
                            replica: i,
                            region: name.to_string(),
                            region_start: start,
                            region_end: end,
                            addr: *addr,
                            page: (addr - start) / PAGE,
                        });
                        per_replica[i].update(&addr.to_le_bytes());
                        per_replica[i].update(keys[j].unwrap_or("-").as_bytes());
                    }
                }
            }
            None => noise.push(NoisePage { region: name.to_string(), addr: *addr, distinct: v.groups.len() }),
        }
    }
    MemVerdict {
        pages_compared: pages.len(),
        divergent,
        noise,
        keys: per_replica.into_iter().map(|h| *h.finalize().as_bytes()).collect(),
    }
}

/// A single replica's memory key against a reference snapshot (the voted replica's), for reruns that
/// have no siblings to vote with: consistent with [`vote_pages`]' keys, and blind to known noise pages.
pub fn key_against(reference: &MemSnapshot, other: &MemSnapshot, noise: &[NoisePage]) -> [u8; 32] {
    let index = |s: &MemSnapshot| -> BTreeMap<u64, String> {
        s.regions
            .iter()
            .flat_map(|r| r.pages().enumerate().map(move |(i, d)| (r.start + i as u64 * PAGE, d.to_string())))
            .collect()
    };
    let (a, b) = (index(reference), index(other));
    let noisy: std::collections::HashSet<u64> = noise.iter().map(|n| n.addr).collect();
    let mut h = blake3::Hasher::new();
    let addrs: std::collections::BTreeSet<u64> = a.keys().chain(b.keys()).copied().collect();
    for addr in addrs {
        let (x, y) = (a.get(&addr), b.get(&addr));
        if x != y && !noisy.contains(&addr) {
            h.update(&addr.to_le_bytes());
            h.update(y.map_or("-", |s| s.as_str()).as_bytes());
        }
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(heap: &[&str], stack: &[&str]) -> MemSnapshot {
        let region = |name: &str, start: u64, pages: &[&str]| Region {
            name: name.into(),
            start,
            end: start + pages.len() as u64 * PAGE,
            digests: pages.iter().map(|s| format!("{s:>32}")).collect(),
        };
        MemSnapshot {
            regions: vec![region("[heap]", 0x1000_0000, heap), region("[stack]", 0x7fff_0000, stack)],
            threads: 1,
            ..Default::default()
        }
    }

    #[test]
    fn identical_replicas_have_no_divergence_and_no_noise() {
        let a = snap(&["a", "b"], &["s"]);
        let v = vote_pages(&[Some(&a), Some(&a.clone()), Some(&a.clone())]);
        assert_eq!((v.pages_compared, v.divergent.len(), v.noise.len()), (3, 0, 0));
        assert!(v.keys.iter().all(|k| *k == v.keys[0]));
    }

    #[test]
    fn a_flipped_page_is_blamed_on_its_replica_at_its_address() {
        let a = snap(&["a", "b"], &["s"]);
        let flipped = snap(&["a", "B"], &["s"]);
        let v = vote_pages(&[Some(&a), Some(&flipped), Some(&a.clone())]);
        assert_eq!(
            v.divergent,
            vec![PageDivergence {
                replica: 1,
                region: "[heap]".into(),
                region_start: 0x1000_0000,
                region_end: 0x1000_2000,
                addr: 0x1000_1000,
                page: 1
            }]
        );
        assert_eq!(v.keys[0], v.keys[2]);
        assert_ne!(v.keys[0], v.keys[1]);
    }

    #[test]
    fn all_distinct_pages_are_noise_not_divergence_and_do_not_split_keys() {
        let v = vote_pages(&[
            Some(&snap(&["a"], &["1"])),
            Some(&snap(&["a"], &["2"])),
            Some(&snap(&["a"], &["3"])),
        ]);
        assert_eq!(v.divergent.len(), 0);
        assert_eq!(v.noise, vec![NoisePage { region: "[stack]".into(), addr: 0x7fff_0000, distinct: 3 }]);
        assert!(v.keys.iter().all(|k| *k == v.keys[0]));
    }

    #[test]
    fn a_rerun_key_matches_the_majority_key_when_memory_agrees() {
        let a = snap(&["a", "b"], &["s"]);
        let flipped = snap(&["a", "B"], &["s"]);
        let v = vote_pages(&[Some(&a), Some(&flipped), Some(&a.clone())]);
        assert_eq!(key_against(&a, &a.clone(), &v.noise), v.keys[0]);
        assert_eq!(key_against(&a, &flipped, &v.noise), v.keys[1]);
        // Known noise pages never split a rerun off.
        let noisy = snap(&["a", "b"], &["t"]);
        assert_eq!(
            key_against(
                &a,
                &noisy,
                &[NoisePage { region: "[stack]".into(), addr: 0x7fff_0000, distinct: 3 }]
            ),
            v.keys[0]
        );
    }

    #[test]
    fn a_replica_without_a_snapshot_abstains() {
        let a = snap(&["a"], &["s"]);
        let b = snap(&["x"], &["s"]);
        let v = vote_pages(&[Some(&a), None, Some(&b)]);
        // Two voters disagreeing on the heap page: no strict majority of 2 -> noise.
        assert_eq!(v.noise.len(), 1);
        assert_eq!(v.divergent.len(), 0);
    }
}
