//! The GitHub Actions job summary: a short Markdown block appended to $GITHUB_STEP_SUMMARY, so a flaky
//! or masked result shows on the run's page without digging through logs.

use super::RunReport;
use crate::classify::Class;

pub fn render(r: &RunReport) -> String {
    let c = &r.classification;
    let icon = match c.class {
        Class::None if r.exit_code == 0 => "✅",
        Class::Transient => "⚠️",
        Class::Nondeterministic => "🎲",
        _ => "❌",
    };
    // The command is shown in a code span on the heading's line. A newline in an argument would end
    // both and let the rest be read as Markdown or HTML: control characters are escaped (`\n`), and a
    // backtick, which would end the span, is shown as a quote.
    let mut md = format!(
        "### {icon} tmr: `{}`\n\n**{}** · exit {} · {} replica{}",
        super::one_line(&r.command.join(" ")).replace('`', "'"),
        c.class.name(),
        r.exit_code,
        r.replicas,
        if r.replicas == 1 { "" } else { "s" }
    );
    if c.reruns > 0 {
        md.push_str(&format!(" · {} {} reruns", c.reruns, c.rerun_mode));
    }
    md.push_str("\n\n");
    if !c.outcomes.is_empty() && (c.reruns > 0 || c.outcomes.len() > 1) {
        md.push_str("| outcome | voted round | reruns | rate (95% CI) |\n|---|---|---|---|\n");
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
        md.push_str(&format!(
            "The odd outcome did not come back in {} reruns: if it is a flake, its rate is below {:.1}% \
             ({:.0}% confidence).\n\n",
            c.reruns,
            b * 100.0,
            c.confidence * 100.0
        ));
    }
    md
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
}
