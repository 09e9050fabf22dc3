//! Fault injection specs: what to corrupt, where and when, with every open choice drawn from a seeded
//! generator so a trial replays exactly. Pure: parsing, drawing and choosing a target from a memory map;
//! the monitor (`trace::monitor`) does the stopping and writing.
//!
//! Syntax: `flip:replica=R,after=DUR|exit,region=heap|stack|data|anon|any,bits=K,page=P,offset=O,bit=B,seed=S`
//! or `reg:replica=R,after=DUR|exit,reg=NAME|any,bit=B,seed=S`. Every key is optional; `after` defaults to
//! `exit` (state corrupted after the computation, never reaching the output).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{parse_duration, PAGE};

/// The environment variable that carries a spec from tmr to the monitors (removed before the command runs).
pub const ENV: &str = "TMR_INJECT";

/// Separates the specs of a multi-fault trial (`tmr campaign --faults K`) in [`ENV`]: one variable
/// reaches every replica's monitor, and each monitor takes the spec that names its replica.
pub const SPEC_SEP: char = ';';

/// The spec in `text` (one spec, or several joined by [`SPEC_SEP`]) that names `replica`.
pub fn spec_for(text: &str, replica: usize) -> Option<InjectSpec> {
    text.split(SPEC_SEP).filter_map(|s| InjectSpec::parse(s).ok()).find(|s| s.replica == Some(replica))
}

/// Several specs as one [`ENV`] value (the inverse of [`spec_for`] for each named replica).
pub fn join_specs(specs: &[InjectSpec]) -> String {
    specs.iter().map(InjectSpec::to_text).collect::<Vec<_>>().join(&SPEC_SEP.to_string())
}

/// Most bits one memory flip may change (a multi-bit upset; more is not a bit flip any longer).
pub const MAX_BITS: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionClass {
    Heap,
    Stack,
    /// Writable private mappings of files: .data/.bss of the program and its libraries.
    Data,
    Anon,
    Any,
}

impl RegionClass {
    pub fn matches(self, name: &str) -> bool {
        match self {
            RegionClass::Heap => name == "[heap]",
            RegionClass::Stack => name == "[stack]",
            RegionClass::Data => name.starts_with('/'),
            RegionClass::Anon => name == "[anon]",
            RegionClass::Any => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    After(Duration),
    /// At the exit stop, before the memory snapshot.
    Exit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Target {
    Flip { region: RegionClass, bits: u32, page: Option<u64>, offset: Option<u64>, bit: Option<u8> },
    Reg { reg: Option<String>, bit: Option<u8> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectSpec {
    pub replica: Option<usize>,
    pub when: When,
    pub target: Target,
    pub seed: u64,
}

/// Registers a fault may hit: the general-purpose ones and the instruction and stack pointers.
pub const REGISTERS: [&str; 17] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

impl InjectSpec {
    pub fn parse(text: &str) -> Result<InjectSpec, String> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let mut replica = None;
        let mut when = When::Exit;
        let mut seed = 0;
        let (mut region, mut bits, mut page, mut offset, mut bit, mut reg) =
            (RegionClass::Any, 1u32, None, None, None, None);
        let mut seen: Vec<&str> = Vec::new();
        for kv in rest.split(',').filter(|s| !s.is_empty()) {
            let (k, v) =
                kv.split_once('=').ok_or_else(|| format!("'{kv}' in --inject: expected key=value"))?;
            if seen.contains(&k) {
                return Err(format!("--inject {k}: given twice"));
            }
            seen.push(k);
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("--inject {k}={v}: not a number"));
            // Each key belongs to one kind: a key of the other kind would be silently ignored.
            let only = |for_kind: &str| {
                if kind == for_kind || !matches!(kind, "flip" | "reg") {
                    Ok(())
                } else {
                    Err(format!("--inject {kind}: the key '{k}' applies only to {for_kind}:…"))
                }
            };
            match k {
                "replica" => {
                    replica = Some(
                        usize::try_from(num(v)?).map_err(|_| format!("--inject replica={v}: too large"))?,
                    )
                }
                "after" if v == "exit" => when = When::Exit,
                "after" => when = When::After(parse_duration(v).map_err(|e| format!("--inject after: {e}"))?),
                "seed" => seed = num(v)?,
                "region" => {
                    only("flip")?;
                    region = match v {
                        "heap" => RegionClass::Heap,
                        "stack" => RegionClass::Stack,
                        "data" => RegionClass::Data,
                        "anon" => RegionClass::Anon,
                        "any" => RegionClass::Any,
                        _ => return Err(format!("--inject region={v}: use heap, stack, data, anon or any")),
                    }
                }
                "bits" => {
                    only("flip")?;
                    bits = match num(v)? {
                        n @ 1..=MAX_BITS => n as u32,
                        _ => return Err(format!("--inject bits={v}: flip 1 to {MAX_BITS} bits")),
                    }
                }
                "page" => {
                    only("flip")?;
                    page = Some(num(v)?)
                }
                "offset" => {
                    only("flip")?;
                    match num(v)? {
                        o if o < PAGE => offset = Some(o),
                        _ => return Err(format!("--inject offset={v}: must be below {PAGE}")),
                    }
                }
                // Checked against the kind's width below, before narrowing: 263 must not become 7.
                "bit" => bit = Some(num(v)?),
                "reg" => {
                    only("reg")?;
                    match v {
                        "any" => reg = None,
                        _ if REGISTERS.contains(&v) => reg = Some(v.to_string()),
                        _ => {
                            return Err(format!(
                                "--inject reg={v}: use one of {} or any",
                                REGISTERS.join(", ")
                            ))
                        }
                    }
                }
                _ => return Err(format!("--inject: unknown key '{k}'")),
            }
        }
        let target = match kind {
            "flip" => {
                if bit.is_some_and(|b| b > 7) {
                    return Err("--inject bit: a memory flip takes a bit 0-7 of the chosen byte".into());
                }
                // Distinct (offset, bit) pairs are all a flip can choose from: asking for more never ends.
                let room = match (offset, bit) {
                    (Some(_), Some(_)) => 1,
                    (Some(_), None) => 8,
                    (None, Some(_)) => PAGE,
                    (None, None) => MAX_BITS,
                };
                if u64::from(bits) > room {
                    return Err(format!(
                        "--inject bits={bits}: only {room} distinct bit(s) exist with the given offset/bit"
                    ));
                }
                Target::Flip { region, bits, page, offset, bit: bit.map(|b| b as u8) }
            }
            "reg" => {
                if bit.is_some_and(|b| b > 63) {
                    return Err("--inject bit: a register has bits 0-63".into());
                }
                Target::Reg { reg, bit: bit.map(|b| b as u8) }
            }
            _ => return Err(format!("--inject '{kind}': expected flip:… or reg:…")),
        };
        Ok(InjectSpec { replica, when, target, seed })
    }

    /// The spec as text the monitor parses back (every choice made so far is explicit).
    pub fn to_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.replica {
            parts.push(format!("replica={r}"));
        }
        parts.push(match self.when {
            When::Exit => "after=exit".into(),
            When::After(d) => format!("after={}us", d.as_micros()),
        });
        parts.push(format!("seed={}", self.seed));
        let kind = match &self.target {
            Target::Flip { region, bits, page, offset, bit } => {
                let r = serde_json::to_value(region).expect("serialisable");
                parts.push(format!("region={}", r.as_str().expect("a string")));
                parts.push(format!("bits={bits}"));
                parts.extend(page.map(|p| format!("page={p}")));
                parts.extend(offset.map(|o| format!("offset={o}")));
                parts.extend(bit.map(|b| format!("bit={b}")));
                "flip"
            }
            Target::Reg { reg, bit } => {
                parts.push(format!("reg={}", reg.as_deref().unwrap_or("any")));
                parts.extend(bit.map(|b| format!("bit={b}")));
                "reg"
            }
        };
        format!("{kind}:{}", parts.join(","))
    }
}

/// splitmix64: tiny, fast, and stable forever, so a recorded seed replays the same draws in any version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// One injected bit flip, as recorded in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Injected {
    pub replica: usize,
    pub at_ms: f64,
    pub seed: u64,
    #[serde(flatten)]
    pub what: InjectedWhat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "kebab-case")]
pub enum InjectedWhat {
    Memory {
        region: String,
        region_start: u64,
        page: u64,
        addr: u64,
        bits: Vec<u8>,
        before: Vec<u8>,
        after: Vec<u8>,
    },
    Register {
        reg: String,
        bit: u8,
        before: u64,
        after: u64,
    },
}

/// A memory region the fault may land in: name, start and end (already restricted to the live stack).
pub type Candidate = (String, u64, u64);

/// Where a memory flip lands: a candidate region, a page in it, and (offset within page, bit) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlipChoice {
    pub region: usize,
    pub page: u64,
    pub flips: Vec<(u64, u8)>,
}

/// Choose the page, byte offsets and bits of a memory flip, or say what is missing.
pub fn choose_flip(
    rng: &mut Rng,
    candidates: &[Candidate],
    region: RegionClass,
    bits: u32,
    page: Option<u64>,
    offset: Option<u64>,
    bit: Option<u8>,
) -> Result<FlipChoice, String> {
    let eligible: Vec<usize> = (0..candidates.len()).filter(|&i| region.matches(&candidates[i].0)).collect();
    let total: u64 = eligible.iter().map(|&i| (candidates[i].2 - candidates[i].1) / PAGE).sum();
    if total == 0 {
        return Err(format!("the replica has no writable {region:?} pages").to_lowercase());
    }
    let (ri, pi) = match page {
        // An explicit page counts within the first eligible region.
        Some(p) => {
            let r = eligible[0];
            let pages = (candidates[r].2 - candidates[r].1) / PAGE;
            if p >= pages {
                return Err(format!("page {p} is beyond the region's {pages} pages"));
            }
            (r, p)
        }
        None => {
            let mut k = rng.below(total);
            let mut chosen = (eligible[0], 0);
            for &i in &eligible {
                let pages = (candidates[i].2 - candidates[i].1) / PAGE;
                if k < pages {
                    chosen = (i, k);
                    break;
                }
                k -= pages;
            }
            chosen
        }
    };
    let room = match (offset, bit) {
        (Some(_), Some(_)) => 1,
        (Some(_), None) => 8,
        _ => PAGE,
    };
    if u64::from(bits) > room {
        return Err(format!("{bits} bit flips asked for, but only {room} distinct bit(s) to choose from"));
    }
    let mut flips: Vec<(u64, u8)> = Vec::new();
    while flips.len() < bits as usize {
        let f = (offset.unwrap_or_else(|| rng.below(PAGE)), bit.unwrap_or_else(|| rng.below(8) as u8));
        if !flips.contains(&f) {
            flips.push(f);
        } else if offset.is_some() && bit.is_some() {
            break;
        }
    }
    Ok(FlipChoice { region: ri, page: pi, flips })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_round_trip() {
        let s = InjectSpec::parse("flip:replica=1,after=50ms,region=heap,bits=1").unwrap();
        assert_eq!(s.replica, Some(1));
        assert_eq!(s.when, When::After(Duration::from_millis(50)));
        assert_eq!(InjectSpec::parse(&s.to_text()).unwrap(), s);
        let r = InjectSpec::parse("reg:reg=rip,bit=3").unwrap();
        assert_eq!(r.target, Target::Reg { reg: Some("rip".into()), bit: Some(3) });
        assert_eq!(r.when, When::Exit);
        assert_eq!(InjectSpec::parse(&r.to_text()).unwrap(), r);
    }

    #[test]
    fn each_replica_takes_its_own_spec_from_a_joined_list() {
        let a = InjectSpec::parse("flip:replica=2,after=5ms,seed=1").unwrap();
        let b = InjectSpec::parse("reg:replica=0,after=9ms,seed=2").unwrap();
        let text = join_specs(&[a.clone(), b.clone()]);
        assert_eq!(spec_for(&text, 2), Some(a.clone()));
        assert_eq!(spec_for(&text, 0), Some(b));
        assert_eq!(spec_for(&text, 1), None);
        // One spec alone is the single-fault form every monitor has always read.
        assert_eq!(spec_for(&a.to_text(), 2), Some(a));
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "zap:x=1",
            "flip:region=moon",
            "flip:bit=9",
            "reg:reg=xmm0",
            "flip:after=soon",
            "flip:offset=4096",
            "flip:what",
        ] {
            assert!(InjectSpec::parse(bad).is_err(), "{bad}");
        }
    }

    /// Values that used to be narrowed or clamped into something else, and keys of the other kind that
    /// used to be ignored: each is an error now, on one line.
    #[test]
    fn out_of_range_and_misplaced_keys_are_errors_not_coercions() {
        for bad in [
            "flip:bit=263",
            "flip:bit=8",
            "reg:bit=256",
            "reg:bit=64",
            "flip:bits=0",
            "flip:bits=65",
            "flip:offset=0,bits=9",
            "flip:offset=0,bit=1,bits=2",
            "flip:reg=rax",
            "reg:region=heap",
            "reg:bits=2",
            "reg:offset=1",
            "reg:page=1",
            "flip:seed=1,seed=2",
            "flip:replica=99999999999999999999",
        ] {
            let err = InjectSpec::parse(bad).expect_err(bad);
            assert!(!err.contains('\n') && err.starts_with("--inject"), "{bad}: {err}");
        }
        for good in ["flip:offset=0,bits=8", "flip:bit=0,bits=64", "flip:bits=64", "reg:bit=63,reg=rax"] {
            let spec = InjectSpec::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(InjectSpec::parse(&spec.to_text()).unwrap(), spec, "{good}");
        }
    }

    #[test]
    fn a_flip_never_asks_for_more_bits_than_exist() {
        let cands: Vec<Candidate> = vec![("[heap]".into(), 0x10000, 0x20000)];
        let pick = |bits, offset, bit| {
            choose_flip(&mut Rng::new(1), &cands, RegionClass::Any, bits, None, offset, bit)
        };
        assert_eq!(pick(8, Some(0), None).unwrap().flips.len(), 8);
        assert!(pick(9, Some(0), None).is_err());
        assert!(pick(2, Some(0), Some(1)).is_err());
    }

    #[test]
    fn the_same_seed_draws_the_same_flip() {
        let cands: Vec<Candidate> = vec![
            ("/bin/x".into(), 0x1000, 0x3000),
            ("[heap]".into(), 0x10000, 0x20000),
            ("[stack]".into(), 0x7000, 0x8000),
        ];
        let a = choose_flip(&mut Rng::new(7), &cands, RegionClass::Any, 2, None, None, None).unwrap();
        let b = choose_flip(&mut Rng::new(7), &cands, RegionClass::Any, 2, None, None, None).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.flips.len(), 2);
        let c = choose_flip(&mut Rng::new(3), &cands, RegionClass::Heap, 1, None, None, None).unwrap();
        assert_eq!(cands[c.region].0, "[heap]");
        assert!(choose_flip(&mut Rng::new(1), &cands, RegionClass::Anon, 1, None, None, None).is_err());
    }

    #[test]
    fn draws_are_uniform_enough() {
        let mut r = Rng::new(42);
        let mut counts = [0u32; 8];
        for _ in 0..8000 {
            counts[r.below(8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (850..1150).contains(&c)), "{counts:?}");
    }
}
