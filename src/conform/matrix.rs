//! The results matrix: several runs (implementations, or one implementation over `ws://` and
//! `wss://`) side by side, cases as rows and implementations as columns, in one self-contained
//! HTML page (Autobahn|Testsuite's multi-implementation report is the model). Pure: a function
//! of the reports.
//!
//! A reader first sees, per implementation, how many MUST cases fail; then the rows that need
//! attention (a case that does not pass everywhere) before the rest; every cell that does not
//! pass says why in one line (the expected-results file's reason when the run had one, else the
//! runner's message), and opens to expected, actual and the start of the wire trace.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::report::escape;
use super::{CaseResult, Level, Report, Verdict};

/// Lines of wire trace shown in a cell's details.
const TRACE_LINES: usize = 40;

/// A column's heading: the run's label, else its first target node.
pub fn column_name(report: &Report) -> String {
    report.label.clone().unwrap_or_else(|| {
        report.target["nodes"][0]
            .as_str()
            .unwrap_or("unnamed run")
            .to_owned()
    })
}

/// What a cell says in one line.
fn why(c: &CaseResult) -> Option<String> {
    if c.verdict == Verdict::Pass {
        return None;
    }
    c.expected_reason
        .clone()
        .or_else(|| c.failure.as_ref().map(|f| f.message.clone()))
        .or_else(|| c.reason.clone())
        .or_else(|| c.note.clone())
}

/// Whether a row needs a reader's attention: some run does not pass it (an observation or a
/// case no run supports does not count).
fn needs_attention(cells: &[Option<&CaseResult>]) -> bool {
    cells.iter().flatten().any(|c| {
        matches!(
            c.verdict,
            Verdict::Fail
                | Verdict::NonStrict
                | Verdict::Errored
                | Verdict::KnownFailing
                | Verdict::Fixed
        )
    }) || cells.iter().any(Option::is_none)
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::NonStrict => "non-strict",
        Verdict::Informational => "info",
        Verdict::Unsupported => "unsupported",
        Verdict::Errored => "ERRORED",
        Verdict::KnownFailing => "known failing",
        Verdict::Fixed => "FIXED",
    }
}

fn cell(out: &mut String, c: Option<&CaseResult>) {
    let Some(c) = c else {
        out.push_str("<td class=\"v-absent\">not run</td>");
        return;
    };
    let v = c.verdict.name();
    let _ = write!(
        out,
        "<td class=\"v-{v}\"><span class=\"badge\">{}</span>",
        verdict_label(c.verdict)
    );
    if let Some(w) = why(c) {
        let _ = write!(out, "<div class=\"why\">{}</div>", escape(&w));
    }
    if c.failure.is_some() || !c.trace.is_empty() {
        out.push_str("<details><summary>details</summary><pre>");
        if let Some(f) = &c.failure {
            let _ = write!(
                out,
                "{}\nexpected: {}\nactual:   {}\n",
                escape(&f.message),
                escape(&f.expected),
                escape(&f.actual)
            );
        }
        if !c.trace.is_empty() {
            out.push_str("\nwire trace:\n");
            for t in c.trace.iter().take(TRACE_LINES) {
                let _ = writeln!(
                    out,
                    "{:>6} ms {:<10} {} {}",
                    t.at_ms,
                    escape(&t.conn),
                    escape(&t.dir),
                    escape(&t.text)
                );
            }
            if c.trace.len() > TRACE_LINES {
                let _ = writeln!(
                    out,
                    "… {} more lines in the run's own report",
                    c.trace.len() - TRACE_LINES
                );
            }
        }
        out.push_str("</pre></details>");
    }
    out.push_str("</td>");
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em 2em;color:#1d1d1f;background:#fff}\
h1{font-size:1.5em;margin:0 0 .2em}p.sub{color:#555;margin:.2em 0 1em}\
.cols{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}\
.col{border:1px solid #ccc;border-radius:6px;padding:8px 12px;min-width:14em}\
.col h2{font-size:1.05em;margin:0 0 4px}.col .overall{font-weight:bold;font-size:1.1em}\
.ok{color:#17702a}.bad{color:#b00020}.counts span{margin-right:.6em;white-space:nowrap}\
.legend span{margin-right:1em;white-space:nowrap}\
.controls{margin:1em 0;position:sticky;top:0;background:#fff;padding:6px 0;z-index:2;border-bottom:1px solid #ddd}\
.controls input[type=search]{width:22em;padding:3px 6px}\
table{border-collapse:collapse;width:100%;table-layout:fixed}\
th,td{border-bottom:1px solid #e3e3e3;padding:5px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3;position:sticky;top:42px;z-index:1}\
th.case,td.case{width:30%}td.case code{font-size:.95em}td.case .title{color:#555;font-size:.88em}\
tr.area td{background:#e9eef6;font-weight:bold;padding-top:10px}\
.lvl{display:inline-block;font-size:.75em;border-radius:3px;padding:0 4px;margin-left:4px;border:1px solid #999;color:#444}\
.lvl-must{border-color:#b00020;color:#b00020}\
.badge{display:inline-block;border-radius:3px;padding:1px 6px;font-weight:600;font-size:.9em}\
.v-pass .badge{background:#dff3e3;color:#17702a}\
.v-fail .badge,.v-errored .badge,.v-fixed .badge{background:#b00020;color:#fff}\
.v-non_strict .badge{background:#fdebc8;color:#7a4300}\
.v-informational .badge,.v-unsupported .badge,.v-known_failing .badge{background:#eee;color:#555}\
.v-absent{color:#999}.why{font-size:.88em;color:#333;margin-top:2px;word-wrap:break-word}\
details summary{cursor:pointer;color:#0645ad;font-size:.85em}\
pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;word-break:break-all;font-size:.8em;max-height:28em;overflow:auto}\
tr.hidden{display:none}";

const SCRIPT: &str = "\
function applyFilter(){\
var q=document.getElementById('q').value.toLowerCase();\
var only=document.getElementById('only').checked;\
document.querySelectorAll('tr.row').forEach(function(r){\
var show=(!only||r.dataset.attention==='1')&&(q===''||r.dataset.search.indexOf(q)>=0);\
r.classList.toggle('hidden',!show);});\
document.querySelectorAll('tr.area').forEach(function(a){\
var n=a.nextElementSibling,any=false;\
while(n&&!n.classList.contains('area')){if(!n.classList.contains('hidden'))any=true;n=n.nextElementSibling;}\
a.classList.toggle('hidden',!any);});}";

/// The matrix page of `reports`, one column each, in the given order.
pub fn html(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>domvia-calls conformance matrix</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>\
<h1>domvia-calls conformance matrix</h1><p class=\"sub\">{} runs side by side. A MUST case that fails breaks \
interoperating clients or a call's security; a non-strict verdict is a SHOULD broken while the MUST held.</p>",
        reports.len()
    );
    out.push_str("<div class=\"cols\">");
    for r in reports {
        let must_fail = r
            .cases
            .iter()
            .filter(|c| c.level == Level::Must && c.verdict.fails_run())
            .count();
        let overall = if r.failed() {
            format!(
                "<div class=\"overall bad\">✗ {must_fail} MUST case{} fail{}</div>",
                if must_fail == 1 { "" } else { "s" },
                if must_fail == 1 { "s" } else { "" }
            )
        } else {
            "<div class=\"overall ok\">✓ every MUST case passes</div>".to_owned()
        };
        let _ = write!(
            out,
            "<div class=\"col\"><h2>{}</h2>{overall}<div class=\"counts\">",
            escape(&column_name(r))
        );
        for (v, n) in r.summary.iter().filter(|(_, n)| **n > 0) {
            let _ = write!(out, "<span class=\"v-{v}\">{n} {v}</span>");
        }
        let _ = write!(
            out,
            "</div><small>{} {} · {} cases · {:.1} s</small></div>",
            escape(&r.tool),
            escape(&r.version),
            r.cases.len(),
            r.duration_ms as f64 / 1000.0
        );
    }
    out.push_str("</div>");
    out.push_str(
        "<div class=\"controls\"><label><input type=\"checkbox\" id=\"only\" onchange=\"applyFilter()\" checked> \
only cases that do not pass everywhere</label> &nbsp; <input type=\"search\" id=\"q\" placeholder=\"filter by id, requirement or text\" \
oninput=\"applyFilter()\"> <span class=\"legend\"> &nbsp; <span class=\"v-pass\"><span class=\"badge\">pass</span></span>\
<span class=\"v-fail\"><span class=\"badge\">FAIL</span> MUST broken</span>\
<span class=\"v-non_strict\"><span class=\"badge\">non-strict</span> SHOULD broken</span>\
<span class=\"v-unsupported\"><span class=\"badge\">unsupported</span> feature not offered</span></span></div>",
    );
    // Rows in the order of the first report, then any case only later reports ran.
    let mut order: Vec<(String, String, Level, String, Vec<String>)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in reports {
        for c in &r.cases {
            if seen.insert(c.id.clone()) {
                order.push((
                    c.id.clone(),
                    c.area.clone(),
                    c.level,
                    c.title.clone(),
                    c.requirements.clone(),
                ));
            }
        }
    }
    let index: Vec<BTreeMap<&str, &CaseResult>> = reports
        .iter()
        .map(|r| r.cases.iter().map(|c| (c.id.as_str(), c)).collect())
        .collect();
    out.push_str("<table><tr><th class=\"case\">case</th>");
    for r in reports {
        let _ = write!(out, "<th>{}</th>", escape(&column_name(r)));
    }
    out.push_str("</tr>");
    let mut area = String::new();
    for (id, case_area, level, title, reqs) in &order {
        if *case_area != area {
            area = case_area.clone();
            let _ = write!(
                out,
                "<tr class=\"area\"><td colspan=\"{}\">{}</td></tr>",
                reports.len() + 1,
                escape(&area.replace('_', " "))
            );
        }
        let cells: Vec<Option<&CaseResult>> =
            index.iter().map(|m| m.get(id.as_str()).copied()).collect();
        let search = format!(
            "{id} {} {title} {}",
            reqs.join(" "),
            cells
                .iter()
                .flatten()
                .filter_map(|c| why(c))
                .collect::<Vec<_>>()
                .join(" ")
        )
        .to_lowercase();
        let _ = write!(
            out,
            "<tr class=\"row\" data-attention=\"{}\" data-search=\"{}\"><td class=\"case\"><code>{}</code>\
<span class=\"lvl lvl-{}\">{}</span><div class=\"title\">{} <small>[{}]</small></div></td>",
            u8::from(needs_attention(&cells)),
            escape(&search),
            escape(id),
            level.name(),
            level.name().to_uppercase(),
            escape(title),
            escape(&reqs.join(", "))
        );
        for c in cells {
            cell(&mut out, c);
        }
        out.push_str("</tr>");
    }
    out.push_str("</table><script>applyFilter()</script></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conform::Failure;

    fn run(label: &str, verdicts: &[(&str, Verdict)]) -> Report {
        Report {
            tool: "domvia-calls conform".into(),
            label: Some(label.into()),
            version: "0".into(),
            protocol_version: 1,
            seed: 1,
            repeat: 1,
            target: serde_json::json!({"nodes": ["ws://x"]}),
            duration_ms: 1,
            summary: BTreeMap::new(),
            cases: verdicts
                .iter()
                .map(|(id, v)| CaseResult {
                    id: (*id).into(),
                    area: id.split('.').next().unwrap_or_default().into(),
                    level: Level::Must,
                    title: "t <b>".into(),
                    requirements: vec!["TRN-001".into()],
                    verdict: *v,
                    duration_ms: 1,
                    note: None,
                    failure: (*v == Verdict::Fail).then(|| Failure {
                        message: "dropped <user_id>".into(),
                        expected: "e".into(),
                        actual: "a".into(),
                    }),
                    reason: None,
                    expected_reason: None,
                    trace: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn rows_that_differ_are_marked_and_everything_is_escaped() {
        let a = run("ours", &[("p.x", Verdict::Pass), ("p.y", Verdict::Pass)]);
        let b = run(
            "theirs <v1>",
            &[
                ("p.x", Verdict::Pass),
                ("p.y", Verdict::Fail),
                ("q.z", Verdict::Pass),
            ],
        );
        let page = html(&[a, b]);
        assert!(page.contains("theirs &lt;v1&gt;"));
        assert!(page.contains("dropped &lt;user_id&gt;"));
        assert!(!page.contains("<b>"));
        // p.x passes everywhere; p.y fails in one run; q.z was not run by the first.
        let attention = |id: &str| {
            let at = page.find(&format!("<code>{id}</code>")).unwrap();
            let row = &page[..at];
            let start = row.rfind("data-attention=\"").unwrap() + 16;
            page[start..start + 1].to_owned()
        };
        assert_eq!(attention("p.x"), "0");
        assert_eq!(attention("p.y"), "1");
        assert_eq!(attention("q.z"), "1");
        assert!(page.contains("not run"));
        assert!(page.contains("✗ 1 MUST case fails"));
    }
}
