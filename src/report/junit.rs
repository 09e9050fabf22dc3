//! JUnit XML for CI dashboards (GitLab, Jenkins, Trunk, BuildPulse): one test case for the command.
//! A run whose outcome changed between executions carries `flakyFailure` records (when the delivered
//! outcome passed) or `rerunFailure` records (when it failed), so flakiness is never hidden.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::RunClass;
use super::{human, RunEntry, RunReport};

pub fn render(r: &RunReport) -> String {
    let name = r.command.join(" ");
    let failed = |e: &RunEntry| !e.outcome.is_success();
    let failing_runs: Vec<&RunEntry> =
        r.runs.iter().chain(&r.classification.rerun_runs).filter(|e| failed(e)).collect();
    let class = r.classification.class;
    let mut status = if r.exit_code == 0 {
        TestCaseStatus::success()
    } else if let (true, Some(note)) = (r.runs.is_empty(), &r.classification.note) {
        // The command could not start: an error of the setup, not a failure of the command.
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(format!("could not start: {note}: exit {}", r.exit_code)).set_type("not-started");
        s
    } else if class == RunClass::Interrupted {
        // Not the command's failure: tmr was stopped. An error, not a failure, and no rerun records.
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        let by = r.interrupted_by.as_deref().unwrap_or("a signal");
        s.set_message(format!("interrupted by {by}: exit {}", r.exit_code)).set_type(class.name());
        s
    } else {
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
        s.set_message(format!("{}: exit {}", class.name(), r.exit_code)).set_type(class.name());
        s
    };
    // A unanimous failure is the test case's own failure, not a rerun of it.
    let counted_as_reruns = !(class == RunClass::None
        || class == RunClass::Interrupted
        || class == RunClass::Deterministic && r.exit_code != 0);
    if counted_as_reruns || (r.exit_code == 0 && class != RunClass::Interrupted) {
        for e in failing_runs {
            let mut rerun = TestRerun::new(NonSuccessKind::Failure);
            rerun
                .set_message(format!("round {} replica {}: {}", e.round, e.replica, e.outcome.describe()))
                .set_type(class.name())
                .set_time(std::time::Duration::try_from_secs_f64(e.wall_ms / 1e3).unwrap_or_default());
            status.add_rerun(rerun);
        }
    }
    let mut case = TestCase::new(name, status);
    case.set_classname("tmr");
    // The whole run, reruns included: a CI dashboard adds up where a job's time went.
    case.set_time(std::time::Duration::try_from_secs_f64(r.wall_ms / 1e3).unwrap_or_default());
    case.add_property(("tmr.class", class.name()));
    case.add_property(("tmr.replicas", r.replicas.to_string().as_str()));
    case.add_property(("tmr.reruns", r.classification.reruns.to_string().as_str()));
    case.set_system_out(human::render(r, &human::Style { color: false }));
    let mut suite = TestSuite::new("tmr");
    suite.add_test_case(case);
    let mut report = Report::new("tmr");
    report.add_test_suite(suite);
    report.to_string().expect("a JUnit report always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `time` used to be the voted round's longest replica (38 s of a 90 s run): it is the whole run's.
    #[test]
    fn the_test_case_time_is_the_whole_run() {
        let mut r = crate::report::sample_report(&["x"]);
        r.wall_ms = 90_000.0;
        let xml = render(&r);
        assert!(xml.contains("<testcase name=\"x\" classname=\"tmr\" time=\"90.000\""), "{xml}");
    }
}
