//! Classifying a run by re-running it: is a disagreement a one-off fault that the vote masked
//! (`transient`), a flake that comes back (`nondeterministic`), or a failure that never changes
//! (`deterministic`)? A pure state machine: the caller feeds it the outcome of each rerun and asks whether
//! to go on, so the stopping rule is tested without processes.
//!
//! The stopping rule. Every class but `no-majority` hinges on one question — does an odd outcome come
//! back? One reappearance settles it (nondeterministic) at once, so a p = 0.2 flake is called after ~5
//! reruns on average instead of a fixed budget. The opposite claim can never be proved, only bounded:
//! after n clean reruns a flake's rate is below 1 − (1 − c)^(1/n) (≈ 3/n at 95%), so the budget is sized
//! to make that bound the smallest flake rate worth catching (`runs_to_bound`). With no majority, reruns
//! stop once every run has differed from every other (unstable output) or one outcome's Wilson interval
//! lies above 1/2 (a majority emerges).

use serde::Serialize;

use crate::stats::{rule_of_three, wilson, Interval};
use crate::vote::vote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Unanimous,
    Transient,
    Nondeterministic,
    Deterministic,
    NoMajority,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Unanimous,
        Class::Transient,
        Class::Nondeterministic,
        Class::Deterministic,
        Class::NoMajority,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Unanimous => "unanimous",
            Class::Transient => "transient",
            Class::Nondeterministic => "nondeterministic",
            Class::Deterministic => "deterministic",
            Class::NoMajority => "no-majority",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// At most this many reruns.
    pub budget: usize,
    pub confidence: f64,
}

/// With no majority, how many reruns in which every run differed from every other settle "unstable".
const UNSTABLE_AFTER: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    /// Unanimous success: nothing to ask.
    Nothing,
    /// A majority with dissenters: do the dissenters' outcomes come back?
    OddComesBack,
    /// A unanimous failure: does it ever go another way?
    FailureStable,
    /// No majority: does one emerge, or is every run different?
    MajorityEmerges,
}

pub struct Classifier<K> {
    policy: Policy,
    initial: Vec<K>,
    majority: Option<K>,
    question: Question,
    reruns: Vec<K>,
}

/// How often one distinct outcome was seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeCount<K> {
    #[serde(skip)]
    pub key: K,
    /// Replicas of the voted round with this outcome.
    pub initial: usize,
    /// Reruns with this outcome.
    pub reruns: usize,
    /// Share of reruns, with its Wilson interval (None without reruns).
    pub rate: Option<f64>,
    pub interval: Option<Interval>,
    /// This is the voted (majority) outcome.
    pub majority: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict<K> {
    pub class: Class,
    pub reruns: usize,
    pub budget: usize,
    pub confidence: f64,
    /// Reruns stopped before the budget because the class was settled.
    pub settled_early: bool,
    /// Every distinct outcome, the majority's first, then by first appearance.
    pub outcomes: Vec<OutcomeCount<K>>,
    /// When no odd outcome came back: the upper bound on its rate at `confidence` (rule of three).
    pub odd_rate_bound: Option<f64>,
    /// With no majority: an outcome that won a majority of the reruns, settled by its Wilson interval.
    #[serde(skip)]
    pub emerged: Option<K>,
    /// With no majority: every run (voted round and reruns) differed from every other.
    pub unstable: bool,
}

impl<K: Eq + Clone> Classifier<K> {
    /// `majority_failed`: the voted outcome is a failure (non-zero exit, signal, timeout).
    pub fn new(initial: Vec<K>, majority_failed: bool, policy: Policy) -> Self {
        let v = vote(&initial);
        let majority = v.majority().map(|g| g.key.clone());
        let question = match (&majority, v.unanimous()) {
            (None, _) => Question::MajorityEmerges,
            (Some(_), true) if majority_failed => Question::FailureStable,
            (Some(_), true) => Question::Nothing,
            (Some(_), false) => Question::OddComesBack,
        };
        Classifier { policy, initial, majority, question, reruns: Vec::new() }
    }

    pub fn wants_rerun(&self) -> bool {
        self.reruns.len() < self.policy.budget && !self.settled()
    }

    pub fn record(&mut self, key: K) {
        self.reruns.push(key);
    }

    fn odd_came_back(&self) -> bool {
        self.reruns.iter().any(|k| Some(k) != self.majority.as_ref())
    }

    fn all_distinct(&self) -> bool {
        let all: Vec<&K> = self.initial.iter().chain(&self.reruns).collect();
        all.iter().enumerate().all(|(i, a)| all[..i].iter().all(|b| b != a))
    }

    fn emerged(&self) -> Option<K> {
        let n = self.reruns.len() as u64;
        let v = vote(&self.reruns);
        let g = v.majority()?;
        (wilson(g.members.len() as u64, n, self.policy.confidence).lo > 0.5).then(|| g.key.clone())
    }

    fn settled(&self) -> bool {
        match self.question {
            Question::Nothing => true,
            Question::OddComesBack | Question::FailureStable => self.odd_came_back(),
            Question::MajorityEmerges => {
                (self.reruns.len() >= UNSTABLE_AFTER && self.all_distinct()) || self.emerged().is_some()
            }
        }
    }

    pub fn verdict(&self) -> Verdict<K> {
        let ran = self.reruns.len();
        let class = match self.question {
            Question::Nothing => Class::Unanimous,
            Question::FailureStable if self.odd_came_back() => Class::Nondeterministic,
            Question::FailureStable if ran > 0 => Class::Deterministic,
            Question::FailureStable => Class::Unanimous,
            Question::OddComesBack if self.odd_came_back() => Class::Nondeterministic,
            Question::OddComesBack => Class::Transient,
            Question::MajorityEmerges => Class::NoMajority,
        };
        let odd_rate_bound = match self.question {
            Question::OddComesBack | Question::FailureStable if !self.odd_came_back() && ran > 0 => {
                Some(rule_of_three(ran as u64, self.policy.confidence))
            }
            _ => None,
        };
        let mut keys: Vec<K> = self.majority.iter().cloned().collect();
        for k in self.initial.iter().chain(&self.reruns) {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        let outcomes = keys
            .into_iter()
            .map(|key| {
                let reruns = self.reruns.iter().filter(|k| **k == key).count();
                OutcomeCount {
                    initial: self.initial.iter().filter(|k| **k == key).count(),
                    reruns,
                    rate: (ran > 0).then(|| reruns as f64 / ran as f64),
                    interval: (ran > 0).then(|| wilson(reruns as u64, ran as u64, self.policy.confidence)),
                    majority: Some(&key) == self.majority.as_ref(),
                    key,
                }
            })
            .collect();
        Verdict {
            class,
            reruns: ran,
            budget: self.policy.budget,
            confidence: self.policy.confidence,
            settled_early: ran < self.policy.budget && self.question != Question::Nothing,
            outcomes,
            odd_rate_bound,
            emerged: if self.question == Question::MajorityEmerges { self.emerged() } else { None },
            unstable: self.question == Question::MajorityEmerges
                && ran >= UNSTABLE_AFTER
                && self.all_distinct(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: Policy = Policy { budget: 10, confidence: 0.95 };

    fn run(initial: &[char], failed: bool, reruns: &[char]) -> (Verdict<char>, usize) {
        let mut c = Classifier::new(initial.to_vec(), failed, POLICY);
        let mut used = 0;
        for &k in reruns {
            if !c.wants_rerun() {
                break;
            }
            c.record(k);
            used += 1;
        }
        (c.verdict(), used)
    }

    #[test]
    fn unanimous_success_needs_no_reruns() {
        let (v, used) = run(&['a', 'a', 'a'], false, &['a'; 10]);
        assert_eq!((v.class, used), (Class::Unanimous, 0));
    }

    #[test]
    fn a_minority_that_never_returns_is_transient_with_a_bound() {
        let (v, used) = run(&['a', 'b', 'a'], false, &['a'; 20]);
        assert_eq!((v.class, used), (Class::Transient, 10));
        // 1 - 0.05^(1/10) = 0.2589
        assert!((v.odd_rate_bound.unwrap() - 0.2589).abs() < 1e-3);
        assert!(!v.settled_early);
    }

    #[test]
    fn a_returning_minority_is_nondeterministic_and_stops_at_once() {
        let (v, used) = run(&['a', 'b', 'a'], false, &['a', 'a', 'b', 'a', 'a']);
        assert_eq!((v.class, used), (Class::Nondeterministic, 3));
        assert!(v.settled_early);
        let b = v.outcomes.iter().find(|o| o.key == 'b').unwrap();
        assert_eq!((b.initial, b.reruns), (1, 1));
        assert!((b.rate.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // A new odd outcome counts as coming back too: the run is not stable.
        let (v, _) = run(&['a', 'b', 'a'], false, &['c']);
        assert_eq!(v.class, Class::Nondeterministic);
    }

    #[test]
    fn a_unanimous_failure_that_always_fails_the_same_way_is_deterministic() {
        let (v, used) = run(&['x', 'x', 'x'], true, &['x'; 20]);
        assert_eq!((v.class, used), (Class::Deterministic, 10));
        let (v, _) = run(&['x', 'x', 'x'], true, &['x', 'y']);
        assert_eq!(v.class, Class::Nondeterministic);
        // Without reruns nothing is confirmed.
        let c = Classifier::new(vec!['x'; 3], true, Policy { budget: 0, confidence: 0.95 });
        assert_eq!(c.verdict().class, Class::Unanimous);
    }

    #[test]
    fn no_majority_stops_when_every_run_differs() {
        let (v, used) = run(&['a', 'b', 'c'], false, &['d', 'e', 'f', 'g']);
        assert_eq!((v.class, used), (Class::NoMajority, 3));
        assert!(v.unstable);
    }

    #[test]
    fn no_majority_can_see_a_majority_emerge() {
        // 0 of the first reruns differ: Wilson(k, k) lower bound exceeds 1/2 once k >= 4 at 95%.
        let (v, used) = run(&['a', 'b', 'c'], false, &['a'; 10]);
        assert_eq!(v.class, Class::NoMajority);
        assert_eq!(v.emerged, Some('a'));
        assert!(used < 10, "settled early, used {used}");
        assert!(!v.unstable);
    }

    proptest! {
        #[test]
        fn reruns_never_exceed_the_budget_and_the_class_is_consistent(
            initial in prop::collection::vec(0u8..3, 1..6),
            reruns in prop::collection::vec(0u8..3, 0..40),
            failed in any::<bool>(),
        ) {
            let mut c = Classifier::new(initial.clone(), failed, POLICY);
            for &k in &reruns {
                if !c.wants_rerun() { break; }
                c.record(k);
            }
            let v = c.verdict();
            prop_assert!(v.reruns <= POLICY.budget);
            let counted: usize = v.outcomes.iter().map(|o| o.reruns).sum();
            prop_assert_eq!(counted, v.reruns);
            let initial_counted: usize = v.outcomes.iter().map(|o| o.initial).sum();
            prop_assert_eq!(initial_counted, initial.len());
            if v.class == Class::Transient || v.class == Class::Deterministic {
                // Claims of stability only after clean reruns, all equal to the majority.
                prop_assert!(v.outcomes.iter().filter(|o| !o.majority).all(|o| o.reruns == 0));
            }
        }
    }
}
