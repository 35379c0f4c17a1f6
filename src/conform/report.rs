//! Report formats: JSON (the [`Report`] itself), JUnit XML for CI systems, a self-contained HTML
//! page, and the text summary printed at the end of a run. All are pure functions of the report.

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::{CaseResult, Report, Verdict};

/// The JUnit XML of a run: one suite per area, one test case per case. `fail` and `fixed` are
/// failures, `errored` is an error, `unsupported` and `known_failing` are skipped, and
/// `non_strict`/`informational` pass with their message in system-out.
pub fn junit(report: &Report) -> Result<String, String> {
    let mut junit = quick_junit::Report::new("domvia-calls conform");
    let mut areas: Vec<&str> = report.cases.iter().map(|c| c.area.as_str()).collect();
    areas.dedup();
    for area in areas {
        let mut suite = TestSuite::new(area);
        for c in report.cases.iter().filter(|c| c.area == area) {
            suite.add_test_case(junit_case(c));
        }
        // quick-junit counts skipped cases as `disabled`; CI systems read `skipped` (the Ant
        // JUnit schema's name), so both are written.
        let skipped = suite.disabled.to_string();
        suite.extra.insert("skipped".into(), skipped.into());
        suite.set_time(std::time::Duration::from_millis(
            report
                .cases
                .iter()
                .filter(|c| c.area == area)
                .map(|c| c.duration_ms)
                .sum(),
        ));
        junit.add_test_suite(suite);
    }
    junit.to_string().map_err(|e| e.to_string())
}

fn junit_case(c: &CaseResult) -> TestCase {
    let detail = failure_text(c);
    let status = match c.verdict {
        Verdict::Fail | Verdict::Fixed => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            if let TestCaseStatus::NonSuccess {
                message,
                description,
                kind,
                ..
            } = &mut s
            {
                *kind = NonSuccessKind::Failure;
                *message = Some(headline(c).into());
                *description = Some(detail.clone().into());
            }
            s
        }
        Verdict::Errored => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            if let TestCaseStatus::NonSuccess {
                message,
                description,
                ..
            } = &mut s
            {
                *message = Some(headline(c).into());
                *description = Some(detail.clone().into());
            }
            s
        }
        Verdict::Unsupported | Verdict::KnownFailing => {
            let mut s = TestCaseStatus::skipped();
            if let TestCaseStatus::Skipped { message, .. } = &mut s {
                *message = Some(format!("{}: {}", c.verdict, headline(c)).into());
            }
            s
        }
        Verdict::Pass | Verdict::NonStrict | Verdict::Informational => TestCaseStatus::success(),
    };
    let mut t = TestCase::new(c.id.clone(), status);
    t.set_classname(format!("conform.{}", c.area));
    t.set_time(std::time::Duration::from_millis(c.duration_ms));
    t.add_property(Property::new("verdict", c.verdict.name()));
    t.add_property(Property::new("requirements", c.requirements.join(" ")));
    if matches!(c.verdict, Verdict::NonStrict | Verdict::Informational) {
        t.set_system_out(format!(
            "{}: {}",
            c.verdict,
            if detail.is_empty() {
                headline(c)
            } else {
                detail
            }
        ));
    }
    t
}

/// One line saying what happened.
pub fn headline(c: &CaseResult) -> String {
    if let Some(f) = &c.failure {
        return f.message.clone();
    }
    if let Some(r) = &c.reason {
        return r.clone();
    }
    c.note.clone().unwrap_or_else(|| c.title.clone())
}

/// Expected, actual and the wire trace, as text.
pub fn failure_text(c: &CaseResult) -> String {
    let mut out = String::new();
    if let Some(f) = &c.failure {
        let _ = writeln!(
            out,
            "{}\nexpected: {}\nactual:   {}",
            f.message, f.expected, f.actual
        );
    } else if let Some(r) = &c.reason {
        let _ = writeln!(out, "{r}");
    }
    if !c.trace.is_empty() {
        let _ = writeln!(out, "wire trace:");
        for t in &c.trace {
            let _ = writeln!(
                out,
                "  {:>6} ms {:<10} {} {}",
                t.at_ms, t.conn, t.dir, t.text
            );
        }
    }
    out
}

/// The text summary for a terminal.
pub fn summary_text(report: &Report) -> String {
    let mut out = String::new();
    for c in report.cases.iter().filter(|c| {
        !matches!(
            c.verdict,
            Verdict::Pass | Verdict::Informational | Verdict::Unsupported
        )
    }) {
        let _ = writeln!(
            out,
            "\n{} {} [{}]\n{}",
            c.verdict.name().to_uppercase(),
            c.id,
            c.requirements.join(", "),
            failure_text(c)
        );
    }
    let counts: Vec<String> = report
        .summary
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| format!("{n} {v}"))
        .collect();
    let _ = writeln!(
        out,
        "{} cases in {:.1} s: {} (seed {})",
        report.cases.len(),
        report.duration_ms as f64 / 1000.0,
        counts.join(", "),
        report.seed
    );
    out
}

/// `s` with the characters HTML gives meaning to replaced by entities.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A self-contained HTML page: summary, a table of every case, and the details (expected,
/// actual, wire trace) of every case that did not pass. No scripts, no external resources.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>domvia-calls conformance report</title><style>\
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;width:100%}}\
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}\
.pass{{color:#17702a}}.fail,.errored,.fixed{{color:#b00020;font-weight:bold}}.non_strict{{color:#a05a00}}\
.unsupported,.informational,.known_failing{{color:#666}}pre{{background:#f6f6f6;padding:8px;overflow-x:auto;white-space:pre-wrap}}\
</style></head><body><h1>domvia-calls conformance report</h1>"
    );
    let _ = write!(
        out,
        "<p>{} {} · protocol v{} · seed {} · {} cases in {:.1} s · target <code>{}</code></p><p>",
        escape(&report.tool),
        escape(&report.version),
        report.protocol_version,
        report.seed,
        report.cases.len(),
        report.duration_ms as f64 / 1000.0,
        escape(&report.target["nodes"].to_string())
    );
    for (v, n) in report.summary.iter().filter(|(_, n)| **n > 0) {
        let _ = write!(out, "<span class=\"{v}\">{n} {v}</span> · ");
    }
    let _ = write!(
        out,
        "</p><table><tr><th>case</th><th>verdict</th><th>level</th><th>requirements</th><th>what it checks</th><th>ms</th></tr>"
    );
    for c in &report.cases {
        let _ = write!(
            out,
            "<tr><td><a href=\"#{id}\">{id}</a></td><td class=\"{v}\">{v}</td><td>{l}</td><td>{r}</td><td>{t}{n}</td><td>{ms}</td></tr>",
            id = escape(&c.id),
            v = c.verdict.name(),
            l = c.level.name(),
            r = escape(&c.requirements.join(" ")),
            t = escape(&c.title),
            n = c
                .note
                .as_ref()
                .map(|n| format!("<br><small>{}</small>", escape(n)))
                .unwrap_or_default(),
            ms = c.duration_ms
        );
    }
    let _ = write!(out, "</table>");
    for c in report.cases.iter().filter(|c| {
        c.failure.is_some()
            || c.reason.is_some() && c.verdict == Verdict::Errored
            || !c.trace.is_empty()
    }) {
        let _ = write!(
            out,
            "<h2 id=\"{id}\" class=\"{v}\">{id}: {v}</h2><pre>{d}</pre>",
            id = escape(&c.id),
            v = c.verdict.name(),
            d = escape(&failure_text(c))
        );
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conform::{Failure, Level, TraceEntry};

    fn report() -> Report {
        let case = |id: &str, verdict, failure: Option<Failure>| CaseResult {
            id: id.into(),
            area: id.split('.').next().unwrap().into(),
            level: Level::Must,
            title: format!("checks <{id}>"),
            requirements: vec!["TRN-001".into()],
            verdict,
            duration_ms: 3,
            note: None,
            failure,
            reason: None,
            expected_reason: None,
            trace: vec![TraceEntry {
                at_ms: 1,
                conn: "a".into(),
                dir: "<".into(),
                text: "{\"event\":\"x<y\"}".into(),
            }],
        };
        Report {
            tool: "domvia-calls conform".into(),
            label: None,
            version: "0".into(),
            protocol_version: 1,
            seed: 7,
            repeat: 1,
            target: serde_json::json!({"nodes": ["ws://127.0.0.1:1"]}),
            duration_ms: 10,
            summary: [
                ("pass".to_owned(), 1),
                ("fail".to_owned(), 1),
                ("unsupported".to_owned(), 1),
            ]
            .into(),
            cases: vec![
                case("connection.a", Verdict::Pass, None),
                case(
                    "connection.b",
                    Verdict::Fail,
                    Some(Failure {
                        message: "broke".into(),
                        expected: "e".into(),
                        actual: "a & b".into(),
                    }),
                ),
                case("cluster.c", Verdict::Unsupported, None),
            ],
        }
    }

    #[test]
    fn junit_marks_failures_and_skips() {
        let xml = junit(&report()).unwrap();
        assert!(
            xml.contains("<testsuite name=\"connection\" tests=\"2\""),
            "{xml}"
        );
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("<failure message=\"broke\""), "{xml}");
        assert!(xml.contains("<skipped"), "{xml}");
        assert!(
            xml.contains(" skipped=\""),
            "the suite counts skipped cases: {xml}"
        );
        assert!(xml.contains("a &amp; b"), "{xml}");
    }

    #[test]
    fn html_escapes_everything_it_embeds() {
        let page = html(&report());
        assert!(page.contains("checks &lt;connection.b&gt;"));
        assert!(page.contains("x&lt;y"));
        assert!(!page.contains("<script"));
        assert!(page.contains("id=\"connection.b\""));
    }
}
