//! Report formats: JSON (the [`Report`] itself), JUnit XML for CI systems, a self-contained HTML
//! page, and the text summary printed at the end of a run. All are pure functions of the report.

use crate::error::ToolError;
use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::{CaseResult, Report, Verdict};

/// The JUnit XML of a run: one suite per area, one test case per case. `fail` and `fixed` are
/// failures, `errored` is an error, `unsupported` and `known_failing` are skipped, and
/// `non_strict`/`informational` pass with their message in system-out.
pub fn junit(report: &Report) -> Result<String, crate::error::ToolError> {
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
    junit.to_string().map_err(|e| ToolError(e.to_string()))
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
        // A polling case sends the same request many times: a run of identical entries is shown
        // once, with how often and until when it repeated.
        let mut i = 0;
        while i < c.trace.len() {
            let t = &c.trace[i];
            let same =
                |u: &super::TraceEntry| u.conn == t.conn && u.dir == t.dir && u.text == t.text;
            let run = c.trace[i..].iter().take_while(|u| same(u)).count();
            let _ = writeln!(
                out,
                "  {:>6} ms {:<10} {} {}",
                t.at_ms, t.conn, t.dir, t.text
            );
            if run > 1 {
                let last = &c.trace[i + run - 1];
                let _ = writeln!(
                    out,
                    "  {:>6} ms {:<10}   (the same {} more time(s), the last at {} ms)",
                    "",
                    "",
                    run - 1,
                    last.at_ms
                );
            }
            i += run;
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

/// Where a verdict sorts in the HTML table: what needs attention first.
fn attention(v: Verdict) -> u8 {
    match v {
        Verdict::Fail | Verdict::Errored | Verdict::Fixed => 0,
        Verdict::NonStrict => 1,
        Verdict::KnownFailing => 2,
        Verdict::Informational => 3,
        Verdict::Unsupported => 4,
        Verdict::Pass => 5,
    }
}

/// Whether a case gets a details section (and its id a link to it).
fn has_details(c: &CaseResult) -> bool {
    c.failure.is_some() || c.reason.is_some() || !c.trace.is_empty()
}

/// A self-contained HTML page: an overall verdict first, then every case (those that need
/// attention first; checkboxes filter by verdict), then the details (failure, reason, wire trace)
/// of each case that has any.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>domvia-calls conformance report</title><style>\
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;width:100%}}\
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}\
.pass{{color:#17702a}}.fail,.errored,.fixed{{color:#b00020;font-weight:bold}}.non_strict{{color:#a05a00}}\
.unsupported,.informational,.known_failing{{color:#666}}pre{{background:#f6f6f6;padding:8px;overflow-x:auto;white-space:pre-wrap}}\
.banner{{padding:12px 16px;border-radius:6px;font-size:18px;margin:1em 0}}.banner.ok{{background:#e3f4e6;color:#17702a}}\
.banner.bad{{background:#fbe4e7;color:#b00020}}label{{margin-right:1em}}\
</style></head><body><h1>domvia-calls conformance report</h1>"
    );
    let count = |v: Verdict| report.cases.iter().filter(|c| c.verdict == v).count();
    let (failing, errored, fixed, non_strict) = (
        count(Verdict::Fail),
        count(Verdict::Errored),
        count(Verdict::Fixed),
        count(Verdict::NonStrict),
    );
    let banner = if report.failed() {
        let mut parts = Vec::new();
        if failing > 0 {
            parts.push(format!("{failing} MUST case(s) fail"));
        }
        if errored > 0 {
            parts.push(format!("{errored} could not be carried out"));
        }
        if fixed > 0 {
            parts.push(format!("{fixed} listed as known failing now pass"));
        }
        format!(
            "<div class=\"banner bad\">FAILED: {}</div>",
            parts.join(", ")
        )
    } else if non_strict > 0 {
        format!(
            "<div class=\"banner ok\">PASSED: every MUST holds; {non_strict} SHOULD(s) broken (non_strict)</div>"
        )
    } else {
        "<div class=\"banner ok\">PASSED: every MUST and SHOULD checked holds</div>".to_owned()
    };
    out.push_str(&banner);
    let _ = write!(
        out,
        "<p>{}{} {} · protocol v{} · seed {} · {} cases in {:.1} s · target <code>{}</code></p><p>",
        report
            .label
            .as_ref()
            .map(|l| format!("<b>{}</b> · ", escape(l)))
            .unwrap_or_default(),
        escape(&report.tool),
        escape(&report.version),
        report.protocol_version,
        report.seed,
        report.cases.len(),
        report.duration_ms as f64 / 1000.0,
        escape(&report.target["nodes"].to_string())
    );
    // One checkbox per verdict present; unticking hides that verdict's rows.
    for (v, n) in report.summary.iter().filter(|(_, n)| **n > 0) {
        let _ = write!(
            out,
            "<label class=\"{v}\"><input type=\"checkbox\" checked data-verdict=\"{v}\"> {n} {v}</label>"
        );
    }
    let _ = write!(
        out,
        "</p><table><tr><th>case</th><th>verdict</th><th>level</th><th>requirements</th><th>what it checks</th><th>ms</th></tr>"
    );
    let mut ordered: Vec<&CaseResult> = report.cases.iter().collect();
    ordered.sort_by_key(|c| attention(c.verdict));
    for c in ordered {
        let id = escape(&c.id);
        let name = if has_details(c) {
            format!("<a href=\"#{id}\">{id}</a>")
        } else {
            id.clone()
        };
        // What the case saw, or why it did not run.
        let aside = c
            .note
            .as_ref()
            .or(c.reason.as_ref())
            .map(|n| format!("<br><small>{}</small>", escape(n)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr data-verdict=\"{v}\"><td>{name}</td><td class=\"{v}\">{v}</td><td>{l}</td><td>{r}</td><td>{t}{aside}</td><td>{ms}</td></tr>",
            v = c.verdict.name(),
            l = c.level.name(),
            r = escape(&c.requirements.join(" ")),
            t = escape(&c.title),
            ms = c.duration_ms
        );
    }
    let _ = write!(out, "</table>");
    let mut detailed: Vec<&CaseResult> = report.cases.iter().filter(|c| has_details(c)).collect();
    detailed.sort_by_key(|c| attention(c.verdict));
    for c in detailed {
        let _ = write!(
            out,
            "<section data-verdict=\"{v}\"><h2 id=\"{id}\" class=\"{v}\">{id}: {v}</h2><pre>{d}</pre></section>",
            id = escape(&c.id),
            v = c.verdict.name(),
            d = escape(&failure_text(c))
        );
    }
    out.push_str(
        "<script>for(const b of document.querySelectorAll('input[data-verdict]'))\
b.addEventListener('change',()=>{for(const r of document.querySelectorAll('[data-verdict]'))\
if(r.tagName!=='INPUT'&&r.dataset.verdict===b.dataset.verdict)r.hidden=!b.checked;});</script>",
    );
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
        let mut r = report();
        r.cases[0].title = "<script>alert(1)</script>".into();
        let page = html(&r);
        assert!(page.contains("checks &lt;connection.b&gt;"));
        assert!(page.contains("x&lt;y"));
        assert!(!page.contains("<script>alert"));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the filter's own script"
        );
        assert!(page.contains("id=\"connection.b\""));
    }

    #[test]
    fn html_leads_with_the_verdict_and_the_failures() {
        let page = html(&report());
        assert!(page.contains("FAILED: 1 MUST case(s) fail"), "{page}");
        let failing = page.find("<tr data-verdict=\"fail\"").unwrap();
        let passing = page.find("<tr data-verdict=\"pass\"").unwrap();
        assert!(failing < passing, "failures are listed first");
        assert!(page.contains("data-verdict=\"unsupported\"> 1 unsupported"));
        let mut passed = report();
        passed.cases.retain(|c| c.verdict == Verdict::Pass);
        passed.cases[0].trace.clear();
        let page = html(&passed);
        assert!(page.contains("PASSED"));
        assert!(
            !page.contains("href=\"#connection.a\""),
            "no link to a section that is not there"
        );
    }

    #[test]
    fn a_repeated_request_in_a_trace_is_shown_once() {
        let mut c = report().cases.remove(1);
        let entry = c.trace[0].clone();
        c.trace = (0..100)
            .map(|i| TraceEntry {
                at_ms: i,
                ..entry.clone()
            })
            .collect();
        let text = failure_text(&c);
        assert_eq!(text.matches("x<y").count(), 1, "{text}");
        assert!(
            text.contains("the same 99 more time(s), the last at 99 ms"),
            "{text}"
        );
    }
}
