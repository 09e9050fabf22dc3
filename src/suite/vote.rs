//! The per-test vote across replicas: each test's outcome is majority-voted (strict majority, as
//! `crate::vote` does for whole runs), so the order, timings and seeds in a runner's output never
//! matter, only what it says about each test. A test missing from a replica's run counts as that
//! replica's `NotRun`, so a replica whose runner crashed outvotes nobody by silence. Reruns go to
//! failing tests and to tests a replica that ran them disagreed on. Pure: no I/O.

use std::collections::BTreeMap;

use super::{SuiteRun, TestId, TestOutcome};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestVote {
    pub name: TestId,
    /// One per replica, in replica order.
    pub outcomes: Vec<TestOutcome>,
    /// The strict-majority outcome; `None` when no outcome has more than half the replicas.
    pub voted: Option<TestOutcome>,
    /// Replicas outside the majority (all of them when there is none), in replica order.
    pub dissenters: Vec<usize>,
}

impl TestVote {
    pub fn unanimous(&self) -> bool {
        self.dissenters.is_empty()
    }

    /// Whether the voted outcome lets the suite pass.
    pub fn good(&self) -> bool {
        self.voted.is_some_and(TestOutcome::is_good)
    }

    /// Rerun alone to classify it: the test failed, or a replica that ran it disagreed. A replica that
    /// never got to the test (its runner died or hung earlier) is no reason by itself: the test it
    /// died in is, and rerunning the hundreds it never reached would cost a suite run per test.
    pub fn needs_rerun(&self) -> bool {
        !self.good() || self.dissenters.iter().any(|&r| self.outcomes[r] != TestOutcome::NotRun)
    }

    /// Some replicas never reported it (their runner crashed, hung or was killed before it).
    pub fn partial(&self) -> bool {
        let missing = self.outcomes.iter().filter(|&&o| o == TestOutcome::NotRun).count();
        missing > 0 && missing < self.outcomes.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteVote {
    /// Every test any replica reported, sorted by id.
    pub tests: Vec<TestVote>,
    pub replicas: usize,
    /// Replicas whose runner did not print its end.
    pub incomplete: Vec<usize>,
    /// Every test's voted outcome is a pass or a skip, and a strict majority of the runners finished
    /// (so a suite whose runners all died before reporting anything never passes).
    pub passed: bool,
}

impl SuiteVote {
    /// Tests to rerun alone, in id order.
    pub fn to_rerun(&self) -> Vec<&TestId> {
        self.tests.iter().filter(|t| t.needs_rerun()).map(|t| &t.name).collect()
    }

    pub fn get(&self, name: &TestId) -> Option<&TestVote> {
        self.tests.binary_search_by(|t| t.name.cmp(name)).ok().map(|i| &self.tests[i])
    }
}

/// Votes every test across the replicas' runs (`runs[r]` is replica r's).
pub fn vote_suite(runs: &[SuiteRun]) -> SuiteVote {
    let n = runs.len();
    let mut table: BTreeMap<&TestId, Vec<TestOutcome>> = BTreeMap::new();
    for (r, run) in runs.iter().enumerate() {
        for result in &run.results {
            let row = table.entry(&result.name).or_insert_with(|| vec![TestOutcome::NotRun; n]);
            // A runner that reports a name twice: its first report counts, as for every other test.
            if row[r] == TestOutcome::NotRun {
                row[r] = result.outcome;
            }
        }
    }
    let tests: Vec<TestVote> = table
        .into_iter()
        .map(|(name, outcomes)| {
            let v = crate::vote::vote(&outcomes);
            TestVote {
                name: name.clone(),
                voted: v.majority().map(|g| g.key),
                dissenters: v.dissenters(),
                outcomes,
            }
        })
        .collect();
    let incomplete: Vec<usize> = (0..n).filter(|&r| !runs[r].complete).collect();
    let passed = 2 * (n - incomplete.len()) > n && tests.iter().all(TestVote::good);
    SuiteVote { tests, replicas: n, incomplete, passed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::TestResult;
    use proptest::prelude::*;
    use TestOutcome::*;

    fn run(tests: &[(&str, TestOutcome)], complete: bool) -> SuiteRun {
        SuiteRun {
            results: tests.iter().map(|(n, o)| TestResult::new(TestId::new("", *n), *o)).collect(),
            complete,
            ..Default::default()
        }
    }

    #[test]
    fn a_flaky_failure_is_outvoted_but_rerun() {
        let v = vote_suite(&[
            run(&[("a", Pass), ("b", Pass)], true),
            run(&[("b", Fail), ("a", Pass)], true),
            run(&[("a", Pass), ("b", Pass)], true),
        ]);
        assert!(v.passed);
        let b = v.get(&TestId::new("", "b")).unwrap();
        assert_eq!((b.voted, b.dissenters.clone()), (Some(Pass), vec![1]));
        assert_eq!(v.to_rerun(), [&TestId::new("", "b")]);
    }

    #[test]
    fn a_deterministic_failure_fails_the_suite() {
        let v =
            vote_suite(&[run(&[("a", Fail)], true), run(&[("a", Fail)], true), run(&[("a", Fail)], true)]);
        assert!(!v.passed);
        assert!(v.tests[0].unanimous());
        assert_eq!(v.to_rerun().len(), 1);
    }

    #[test]
    fn a_crashed_replica_counts_as_not_run_and_does_not_fail_a_majority() {
        let v = vote_suite(&[
            run(&[("a", Pass), ("b", Pass)], true),
            run(&[("a", Pass)], false),
            run(&[("a", Pass), ("b", Pass)], true),
        ]);
        assert!(v.passed);
        assert_eq!(v.incomplete, [1]);
        let b = v.get(&TestId::new("", "b")).unwrap();
        assert_eq!(b.outcomes, [Pass, NotRun, Pass]);
        assert!(b.partial() && !b.needs_rerun());
    }

    #[test]
    fn the_test_a_replica_died_in_is_rerun_not_the_ones_it_never_reached() {
        let v = vote_suite(&[
            run(&[("a", Pass), ("hang", Pass), ("z", Pass)], true),
            run(&[("a", Pass), ("hang", Crashed)], false),
            run(&[("a", Pass), ("hang", Pass), ("z", Pass)], true),
        ]);
        assert!(v.passed);
        assert_eq!(v.to_rerun(), [&TestId::new("", "hang")]);
        assert!(v.get(&TestId::new("", "z")).unwrap().partial());
    }

    #[test]
    fn runners_that_all_died_never_pass() {
        let v = vote_suite(&[run(&[], false), run(&[], false), run(&[("a", Pass)], true)]);
        assert!(!v.passed);
        assert_eq!(v.get(&TestId::new("", "a")).unwrap().voted, Some(NotRun));
    }

    #[test]
    fn skips_pass_and_ties_do_not() {
        let v = vote_suite(&[run(&[("s", Skip)], true), run(&[("s", Skip)], true)]);
        assert!(v.passed);
        let v = vote_suite(&[run(&[("t", Pass)], true), run(&[("t", Fail)], true)]);
        assert!(!v.passed);
        assert_eq!(v.tests[0].dissenters, [0, 1]);
    }

    fn outcome() -> impl Strategy<Value = TestOutcome> {
        prop_oneof![Just(Pass), Just(Fail), Just(Skip), Just(Timeout), Just(Crashed)]
    }

    /// Up to 5 replicas, each reporting a subset of 6 tests.
    fn runs() -> impl Strategy<Value = Vec<SuiteRun>> {
        let one = (proptest::collection::vec(proptest::option::of(outcome()), 6), any::<bool>()).prop_map(
            |(os, complete)| {
                let names = ["t0", "t1", "t2", "t3", "t4", "t5"];
                let tests: Vec<(&str, TestOutcome)> =
                    names.iter().zip(os).filter_map(|(n, o)| o.map(|o| (*n, o))).collect();
                run(&tests, complete)
            },
        );
        proptest::collection::vec(one, 1..=5)
    }

    proptest! {
        #[test]
        fn the_order_of_tests_never_matters(runs in runs(), seed in any::<u64>()) {
            let mut shuffled = runs.clone();
            for (i, r) in shuffled.iter_mut().enumerate() {
                let k = (seed as usize).wrapping_add(i) % (r.results.len().max(1));
                r.results.rotate_left(k);
                if seed & 1 == 1 { r.results.reverse(); }
            }
            prop_assert_eq!(vote_suite(&runs), vote_suite(&shuffled));
        }

        #[test]
        fn the_order_of_replicas_only_renumbers_them(runs in runs(), k in 0usize..5) {
            let n = runs.len();
            let k = k % n;
            let mut rotated = runs.clone();
            rotated.rotate_left(k);
            let (a, b) = (vote_suite(&runs), vote_suite(&rotated));
            prop_assert_eq!(a.passed, b.passed);
            prop_assert_eq!(a.tests.len(), b.tests.len());
            for (ta, tb) in a.tests.iter().zip(&b.tests) {
                prop_assert_eq!(ta.voted, tb.voted);
                let mut back: Vec<usize> = tb.dissenters.iter().map(|&r| (r + k) % n).collect();
                back.sort_unstable();
                prop_assert_eq!(&ta.dissenters, &back);
            }
        }

        #[test]
        fn a_strict_majority_always_wins(runs in runs()) {
            let v = vote_suite(&runs);
            for t in &v.tests {
                let best = t.outcomes.iter().map(|o| t.outcomes.iter().filter(|x| *x == o).count()).max().unwrap();
                let winner = t.outcomes.iter().find(|o| t.outcomes.iter().filter(|x| x == o).count() == best).unwrap();
                if 2 * best > runs.len() {
                    prop_assert_eq!(t.voted, Some(*winner));
                    prop_assert_eq!(t.dissenters.len(), runs.len() - best);
                } else {
                    prop_assert_eq!(t.voted, None);
                }
            }
        }
    }
}
