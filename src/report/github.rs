//! The GitHub Actions job summary: a short Markdown block appended to $GITHUB_STEP_SUMMARY, so a flaky
//! or masked result shows on the run's page without digging through logs.

use super::RunClass;
use super::RunReport;

pub fn render(r: &RunReport) -> String {
    let c = &r.classification;
    let icon = match c.class {
        RunClass::None if r.exit_code == 0 => "✅",
        RunClass::Transient => "⚠️",
        RunClass::Nondeterministic => "🎲",
        RunClass::Interrupted => "⏹️",
        _ => "❌",
    };
    // The command is shown in a code span on the heading's line. A newline in an argument would end
    // both and let the rest be read as Markdown or HTML: control characters are escaped (`\n`), and a
    // backtick, which would end the span, is shown as a quote.
    let conf = confidence(c.confidence);
    let mut md = format!(
        "### {icon} tmr: `{}`\n\n**{}**{} · exit {} · {} replica{}",
        super::one_line(&r.command.join(" ")).replace('`', "'"),
        c.class.name(),
        r.interrupted_by.as_ref().map(|s| format!(" by {s}")).unwrap_or_default(),
        r.exit_code,
        r.replicas,
        if r.replicas == 1 { "" } else { "s" }
    );
    if c.reruns > 0 {
        md.push_str(&format!(
            " · {} {} rerun{}",
            c.reruns,
            c.rerun_mode,
            if c.reruns == 1 { "" } else { "s" }
        ));
    }
    md.push_str("\n\n");
    if let (true, Some(note)) = (r.runs.is_empty(), &c.note) {
        md.push_str(&format!("The command could not start: {}\n\n", super::one_line(note).replace('`', "'")));
        return md;
    }
    if c.class == RunClass::Interrupted {
        // The runs tmr's own signal ended are no evidence about the command: no table, no claim.
        md.push_str("tmr was stopped before the run could be classified: the runs it cut short say nothing about the command.\n\n");
        return md;
    }
    if !c.outcomes.is_empty() && (c.reruns > 0 || c.outcomes.len() > 1) {
        md.push_str(&format!("| outcome | voted round | reruns | rate ({conf} CI) |\n|---|---|---|---|\n"));
        for o in &c.outcomes {
            let rate = match (o.rate, o.interval) {
                (Some(p), Some(i)) => {
                    format!("{:.1}% [{:.1}%, {:.1}%]", p * 100.0, i.lo * 100.0, i.hi * 100.0)
                }
                _ => "–".into(),
            };
            md.push_str(&format!(
                "| {}{} | {}/{} | {}/{} | {rate} |\n",
                o.describe(),
                if o.majority { " (voted)" } else { "" },
                o.initial,
                r.replicas,
                o.reruns,
                c.reruns
            ));
        }
        md.push('\n');
    }
    if let Some(b) = c.odd_rate_bound {
        let bound = format!("{:.1}%", b * 100.0);
        if c.class == RunClass::Deterministic {
            md.push_str(&format!(
                "It failed the same way in all {} runs: if it ever passes, it does so in under {bound} of \
                 runs ({conf} confidence).\n\n",
                c.observations
            ));
        } else {
            md.push_str(&format!(
                "The odd outcome did not come back in {} rerun{}: if it is a flake, its rate is below \
                 {bound} ({conf} confidence).\n\n",
                c.observations,
                if c.observations == 1 { "" } else { "s" }
            ));
        }
    }
    md
}

/// `95%`, `99.9%`: the confidence level as the user gave it.
fn confidence(c: f64) -> String {
    let p = c * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{}%", (p * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newline in argv used to end the heading and inject Markdown and HTML into the job summary.
    #[test]
    fn argv_cannot_inject_markdown_or_html() {
        let r =
            crate::report::sample_report(&["sh", "-c", "x\n\n<img src=x onerror=alert(1)>\n# pwned\r\n`"]);
        let md = render(&r);
        let first = md.lines().next().unwrap();
        assert_eq!(first, "### ✅ tmr: `sh -c x\\n\\n<img src=x onerror=alert(1)>\\n# pwned\\r\\n'`", "{md}");
        assert!(md.lines().skip(1).all(|l| !l.contains("img") && !l.contains("pwned")), "{md}");
    }

    /// A unanimous failure used to get the transient sentence ("the odd outcome did not come back"), and
    /// the table's header said 95% whatever `--confidence` was.
    #[test]
    fn a_unanimous_failure_states_its_own_bound_at_the_given_confidence() {
        let mut r = crate::report::sample_report(&["false"]);
        r.exit_code = 1;
        let c = &mut r.classification;
        (c.class, c.reruns, c.observations, c.confidence) = (RunClass::Deterministic, 29, 32, 0.99);
        c.odd_rate_bound = Some(0.089);
        c.outcomes.push(crate::report::OutcomeEntry {
            outcome: crate::fingerprint::Outcome::Exited { code: 1 },
            stdout: r.runs[0].stdout.clone(),
            stderr: r.runs[0].stderr.clone(),
            initial: 3,
            reruns: 29,
            rate: Some(1.0),
            interval: Some(crate::stats::Interval { lo: 0.9, hi: 1.0 }),
            majority: true,
        });
        let md = render(&r);
        assert!(!md.contains("odd outcome"), "{md}");
        assert!(md.contains("failed the same way in all 32 runs"), "{md}");
        assert!(md.contains("rate (99% CI)") && md.contains("(99% confidence)"), "{md}");
    }
}
