//! Classifying a run by re-running it. Two answers are kept apart: the **vote** (what came out:
//! unanimous, majority, no-majority; `vote.rs`) and the **class** (why replicas differed or failed):
//! `none` (nothing to explain, or nothing settled), `transient` (an odd outcome that never came back: a
//! one-off fault the vote masked), `nondeterministic` (outcomes vary from run to run: a flake, a race, a
//! Heisenbug, output that differs every time) or `deterministic` (every run fails the same way).
//! A pure state machine: the caller feeds it the outcome of each rerun and asks whether to go on, so the
//! stopping rule is tested without processes. [`next_round`] is the pure pacing of reruns against the
//! count and time budgets, tested with a fake clock.
//!
//! The stopping rule. Every class hinges on one question: does an odd outcome come back? One
//! reappearance settles it (nondeterministic) at once, so a p = 0.2 flake is called after ~5 reruns on
//! average. The opposite claim can never be proved, only bounded: after n clean runs a flake's rate is
//! below 1 − (1 − c)^(1/n) (≈ 3/n at 95%); the bound reported is the one the runs actually spent bought.
//! A unanimous failure counts every run, the voted round's replicas included (each is an independent
//! execution that failed the same way). A transient minority counts only the reruns (the voted round is
//! where the odd outcome was seen). With no majority, reruns settle `nondeterministic` as soon as two of
//! them differ or one brings yet another outcome, and `transient` once one of the voted round's outcomes
//! wins the reruns clearly (its Wilson interval lies above 1/2) and nothing else came back.

use std::time::Duration;

use serde::Serialize;

use crate::stats::{rule_of_three, wilson, Interval};
use crate::vote::vote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Nothing to explain (all replicas passed and agreed), or nothing was settled (no reruns).
    None,
    Transient,
    Nondeterministic,
    Deterministic,
}

impl Class {
    pub const ALL: [Class; 4] =
        [Class::None, Class::Transient, Class::Nondeterministic, Class::Deterministic];

    pub fn name(self) -> &'static str {
        match self {
            Class::None => "none",
            Class::Transient => "transient",
            Class::Nondeterministic => "nondeterministic",
            Class::Deterministic => "deterministic",
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    /// Unanimous success, or an outcome no rerun can change (exec failed): nothing to ask.
    Nothing,
    /// A majority with dissenters: do the dissenters' outcomes come back?
    OddComesBack,
    /// A unanimous failure: does it ever go another way?
    FailureStable,
    /// No majority: do the outcomes keep varying, or does one of them win?
    MajorityEmerges,
}

pub struct Classifier<K> {
    policy: Policy,
    initial: Vec<K>,
    majority: Option<K>,
    question: Question,
    /// The voted outcome is one that no rerun can change (the command could not be executed).
    settled_at_start: bool,
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
    /// When no odd outcome came back: the upper bound on its rate at `confidence` (rule of three) ...
    pub odd_rate_bound: Option<f64>,
    /// ... over this many runs (reruns; for a unanimous failure, the voted round's replicas too).
    pub observations: usize,
    /// With no majority: an outcome that won a majority of the reruns, settled by its Wilson interval.
    #[serde(skip)]
    pub emerged: Option<K>,
    /// Every run (voted round and reruns) differed from every other: unstable output.
    pub unstable: bool,
    /// The command could not be executed: no rerun can change that, so none was spent.
    pub exec_failed: bool,
}

impl<K: Eq + Clone> Classifier<K> {
    /// `majority_failed`: the voted outcome is a failure (non-zero exit, signal, timeout).
    /// `exec_failed`: the voted outcome is an exec failure, which reruns cannot change.
    pub fn new(initial: Vec<K>, majority_failed: bool, exec_failed: bool, policy: Policy) -> Self {
        let v = vote(&initial);
        let majority = v.majority().map(|g| g.key.clone());
        let question = match (&majority, v.unanimous()) {
            _ if exec_failed && majority.is_some() => Question::Nothing,
            (None, _) => Question::MajorityEmerges,
            (Some(_), true) if majority_failed => Question::FailureStable,
            (Some(_), true) => Question::Nothing,
            (Some(_), false) => Question::OddComesBack,
        };
        Classifier {
            policy,
            initial,
            majority,
            question,
            settled_at_start: exec_failed && question == Question::Nothing,
            reruns: Vec::new(),
        }
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

    /// With no majority: the reruns vary (two of them differ) or brought an outcome the voted round
    /// did not have.
    fn reruns_vary(&self) -> bool {
        let Some(first) = self.reruns.first() else { return false };
        self.reruns.iter().any(|k| k != first) || !self.initial.contains(first)
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
            Question::MajorityEmerges => self.reruns_vary() || self.emerged().is_some(),
        }
    }

    pub fn verdict(&self) -> Verdict<K> {
        let ran = self.reruns.len();
        let class = match self.question {
            Question::Nothing if self.settled_at_start => Class::Deterministic,
            Question::Nothing => Class::None,
            Question::FailureStable if self.odd_came_back() => Class::Nondeterministic,
            Question::FailureStable => Class::Deterministic,
            Question::OddComesBack if self.odd_came_back() => Class::Nondeterministic,
            Question::OddComesBack => Class::Transient,
            Question::MajorityEmerges if ran == 0 => Class::None,
            Question::MajorityEmerges if self.reruns_vary() => Class::Nondeterministic,
            Question::MajorityEmerges => Class::Transient,
        };
        // The runs that failed the same way (a unanimous failure counts its voted round too) or that
        // stayed clean of the odd outcome (reruns only).
        let observations = match class {
            Class::Deterministic => self.initial.len() + ran,
            Class::Transient => ran,
            _ => 0,
        };
        let odd_rate_bound =
            (observations > 0).then(|| rule_of_three(observations as u64, self.policy.confidence));
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
            settled_early: ran < self.policy.budget && self.question != Question::Nothing && self.settled(),
            outcomes,
            odd_rate_bound,
            observations,
            emerged: if self.question == Question::MajorityEmerges { self.emerged() } else { None },
            unstable: self.question == Question::MajorityEmerges && ran > 0 && self.all_distinct(),
            exec_failed: self.settled_at_start,
        }
    }
}

/// The time side of the rerun budget: a fixed duration, or a multiple of the voted round's wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeBudget {
    Absolute(Duration),
    Relative(f64),
}

impl TimeBudget {
    /// The default, `2x`: the voted round plus two rounds' worth of reruns keeps a failing run within
    /// about 3× its own wall time, and with parallel rounds of 3 a unanimous failure is seen 9 times
    /// (if it ever passes, it does so in under 28% of runs at 95% confidence).
    pub const DEFAULT: TimeBudget = TimeBudget::Relative(2.0);

    /// A relative budget is never below this (unless it is `0x`): for a command that takes 5 ms, 2x is
    /// one round, a weak claim, while a quarter of a second buys the full count budget and costs nobody.
    pub const RELATIVE_FLOOR: Duration = Duration::from_millis(250);

    /// The budget in time for a voted round that took `voted_wall`.
    pub fn resolve(self, voted_wall: Duration) -> Duration {
        match self {
            TimeBudget::Absolute(d) => d,
            TimeBudget::Relative(k) if k <= 0.0 => Duration::ZERO,
            TimeBudget::Relative(k) => crate::units::scale_duration(voted_wall, k).max(Self::RELATIVE_FLOOR),
        }
    }
}

/// How many reruns to start in the next round (0: stop), given the count left, the time budget, the time
/// spent on reruns so far and the predicted length of a round (the median of the rounds so far, or the
/// voted round's wall time before any). A round starts when at least half of it is predicted to fit in
/// the time budget: the budget is a promise about cost that rounds in flight may overrun by half a round
/// at most (by prediction), never a point where work in flight is thrown away; and the noise between two
/// rounds of the same command cannot cancel a round that fits.
pub fn next_round(
    round_size: usize,
    runs_left: usize,
    time_budget: Duration,
    spent: Duration,
    predicted_round: Duration,
) -> usize {
    if runs_left == 0 || time_budget.is_zero() || spent.saturating_add(predicted_round / 2) > time_budget {
        return 0;
    }
    round_size.max(1).min(runs_left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: Policy = Policy { budget: 10, confidence: 0.95 };

    fn run(initial: &[char], failed: bool, reruns: &[char]) -> (Verdict<char>, usize) {
        let mut c = Classifier::new(initial.to_vec(), failed, false, POLICY);
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
        assert_eq!((v.class, used), (Class::None, 0));
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
        // Every run counts: the voted round's three failures and the ten reruns.
        assert_eq!(v.observations, 13);
        let (v, _) = run(&['x', 'x', 'x'], true, &['x', 'y']);
        assert_eq!(v.class, Class::Nondeterministic);
        // Without reruns the voted round's replicas are the evidence, and the bound says how little.
        let c = Classifier::new(vec!['x'; 3], true, false, Policy { budget: 0, confidence: 0.95 });
        let v = c.verdict();
        assert_eq!((v.class, v.observations), (Class::Deterministic, 3));
        assert!((v.odd_rate_bound.unwrap() - 0.6316).abs() < 1e-3);
    }

    #[test]
    fn with_no_majority_output_that_differs_every_run_is_nondeterministic_and_unstable() {
        let (v, used) = run(&['a', 'b', 'c'], false, &['d', 'e', 'f', 'g']);
        assert_eq!((v.class, used), (Class::Nondeterministic, 1));
        assert!(v.unstable);
        // Reruns that differ among themselves settle it too, even when each is an outcome seen before.
        let (v, used) = run(&['a', 'b', 'c'], false, &['a', 'b', 'a']);
        assert_eq!((v.class, used), (Class::Nondeterministic, 2));
        assert!(!v.unstable);
    }

    #[test]
    fn with_no_majority_an_outcome_that_wins_every_rerun_makes_the_others_transient() {
        // Wilson(k, k) lower bound exceeds 1/2 once k >= 4 at 95%.
        let (v, used) = run(&['a', 'b', 'c'], false, &['a'; 10]);
        assert_eq!(v.class, Class::Transient);
        assert_eq!(v.emerged, Some('a'));
        assert!(used < 10, "settled early, used {used}");
        assert!(!v.unstable);
        // Not rerun: nothing is settled.
        let (v, _) = run(&['a', 'b', 'c'], false, &[]);
        assert_eq!(v.class, Class::None);
    }

    #[test]
    fn an_exec_failure_is_deterministic_at_once_and_spends_nothing() {
        let c = Classifier::new(vec!['e'; 3], true, true, POLICY);
        assert!(!c.wants_rerun());
        let v = c.verdict();
        assert_eq!((v.class, v.reruns, v.exec_failed), (Class::Deterministic, 0, true));
    }

    #[test]
    fn rounds_start_while_half_of_one_fits_the_time_budget() {
        let s = Duration::from_secs;
        // The default 2x after a 1 s voted round: two rounds of 3, whatever the noise between rounds.
        let budget = TimeBudget::DEFAULT.resolve(s(1));
        assert_eq!(next_round(3, 29, budget, s(0), s(1)), 3);
        assert_eq!(next_round(3, 26, budget, Duration::from_millis(1100), Duration::from_millis(1100)), 3);
        assert_eq!(next_round(3, 23, budget, Duration::from_millis(2200), Duration::from_millis(1100)), 0);
        // The count budget caps the last round; an exhausted count or a too-small budget stops.
        assert_eq!(next_round(3, 2, budget, s(0), s(1)), 2);
        assert_eq!(next_round(3, 0, budget, s(0), s(1)), 0);
        assert_eq!(next_round(3, 29, TimeBudget::Relative(0.4).resolve(s(1)), s(0), s(1)), 0);
        // A fast command still gets a quarter of a second; 0x means no reruns at all.
        let fast = TimeBudget::DEFAULT.resolve(Duration::from_millis(5));
        assert_eq!(fast, TimeBudget::RELATIVE_FLOOR);
        assert_eq!(next_round(3, 29, fast, Duration::from_millis(200), Duration::from_millis(5)), 3);
        assert_eq!(TimeBudget::Relative(0.0).resolve(s(1)), Duration::ZERO);
        assert_eq!(next_round(3, 29, Duration::ZERO, s(0), Duration::ZERO), 0);
        // Sequential reruns are rounds of one.
        assert_eq!(next_round(1, 29, s(10), s(9), s(1)), 1);
        // A huge factor saturates instead of overflowing.
        assert_eq!(TimeBudget::Relative(1e300).resolve(s(1)), Duration::MAX);
    }

    proptest! {
        #[test]
        fn reruns_never_exceed_the_budget_and_the_class_is_consistent(
            initial in prop::collection::vec(0u8..3, 1..6),
            reruns in prop::collection::vec(0u8..3, 0..40),
            failed in any::<bool>(),
        ) {
            let mut c = Classifier::new(initial.clone(), failed, false, POLICY);
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
            if v.class == Class::Deterministic
                || (v.class == Class::Transient && v.outcomes.iter().any(|o| o.majority))
            {
                // Claims of stability only after clean reruns, all equal to the majority.
                prop_assert!(v.outcomes.iter().filter(|o| !o.majority).all(|o| o.reruns == 0));
            }
        }
    }
}
