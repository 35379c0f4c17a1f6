//! Expected-results files: the verdict each case is expected to get on one implementation, with
//! a reason for every case that does not pass (rustls BoGo's disabled-tests list is the model).
//! CI diffs a run with the file, so a change in the kit's verdicts on any implementation is seen.
//!
//! Two forms are read: the plain map `{ "case.id": "pass", ... }`, and
//!
//! ```json
//! { "implementation": "sockudo 5.2.0",
//!   "cases": { "case.id": "pass",
//!              "other.id": { "verdict": "fail", "reason": "why, and what it costs a client" } } }
//! ```
//!
//! which is what [`Expected::to_json`] writes. Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Report;
use super::verdict::Verdict;

/// Marks a reason nobody has written yet; [`Expected::unexplained`] lists such cases.
pub const UNEXPLAINED: &str = "UNEXPLAINED";

/// One case's expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedCase {
    pub verdict: Verdict,
    pub reason: Option<String>,
}

/// A whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    pub implementation: Option<String>,
    pub cases: BTreeMap<String, ExpectedCase>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum CaseForm {
    Bare(Verdict),
    Explained {
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Expected {
    /// Reads either form.
    pub fn parse(text: &str) -> Result<Expected, crate::error::ConfigError> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let (implementation, cases) = match v.get("cases") {
            Some(cases) => (
                v.get("implementation")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                cases.clone(),
            ),
            None => (None, v),
        };
        let forms: BTreeMap<String, CaseForm> =
            serde_json::from_value(cases).map_err(|e| format!("cases: {e}"))?;
        Ok(Expected {
            implementation,
            cases: forms
                .into_iter()
                .map(|(id, f)| {
                    let c = match f {
                        CaseForm::Bare(verdict) => ExpectedCase {
                            verdict,
                            reason: None,
                        },
                        CaseForm::Explained { verdict, reason } => ExpectedCase { verdict, reason },
                    };
                    (id, c)
                })
                .collect(),
        })
    }

    /// Case id to verdict.
    pub fn verdicts(&self) -> BTreeMap<String, Verdict> {
        self.cases
            .iter()
            .map(|(id, c)| (id.clone(), c.verdict))
            .collect()
    }

    /// The file for `report`, keeping the reasons of `self` where a case's verdict did not
    /// change. An unsupported case is explained by the runner's own reason; any other case that
    /// does not pass gets [`UNEXPLAINED`] and the runner's message until someone writes why.
    pub fn updated(&self, report: &Report) -> Expected {
        let cases = report
            .cases
            .iter()
            .map(|c| {
                let kept = self
                    .cases
                    .get(&c.id)
                    .filter(|e| e.verdict == c.verdict)
                    .and_then(|e| e.reason.clone());
                let reason = match c.verdict {
                    Verdict::Pass | Verdict::Informational => None,
                    _ => kept.or_else(|| match (c.verdict, &c.reason) {
                        (Verdict::Unsupported, Some(r)) => Some(r.clone()),
                        _ => Some(format!(
                            "{UNEXPLAINED}: {}",
                            c.failure
                                .as_ref()
                                .map(|f| f.message.as_str())
                                .or(c.reason.as_deref())
                                .unwrap_or("no message")
                        )),
                    }),
                };
                (
                    c.id.clone(),
                    ExpectedCase {
                        verdict: c.verdict,
                        reason,
                    },
                )
            })
            .collect();
        Expected {
            implementation: self.implementation.clone().or_else(|| report.label.clone()),
            cases,
        }
    }

    /// Cases that neither pass nor are observations and have no written reason.
    pub fn unexplained(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|(_, c)| !matches!(c.verdict, Verdict::Pass | Verdict::Informational))
            .filter(|(_, c)| {
                c.reason
                    .as_deref()
                    .is_none_or(|r| r.trim().is_empty() || r.starts_with(UNEXPLAINED))
            })
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// The explained form, pretty-printed with a final newline.
    pub fn to_json(&self) -> String {
        let cases: BTreeMap<&str, CaseForm> = self
            .cases
            .iter()
            .map(|(id, c)| {
                let form = match &c.reason {
                    None => CaseForm::Bare(c.verdict),
                    Some(r) => CaseForm::Explained {
                        verdict: c.verdict,
                        reason: Some(r.clone()),
                    },
                };
                (id.as_str(), form)
            })
            .collect();
        let mut doc = serde_json::Map::new();
        if let Some(i) = &self.implementation {
            doc.insert("implementation".into(), Value::String(i.clone()));
        }
        doc.insert(
            "cases".into(),
            serde_json::to_value(cases).expect("cases serialize"),
        );
        let mut s = serde_json::to_string_pretty(&doc).expect("a JSON map serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read_the_same_verdicts() {
        let flat = Expected::parse(r#"{"a.x": "pass", "b.y": "fail"}"#).unwrap();
        let full = Expected::parse(
            r#"{"implementation": "x", "cases": {"a.x": "pass", "b.y": {"verdict": "fail", "reason": "why"}}}"#,
        )
        .unwrap();
        assert_eq!(flat.verdicts(), full.verdicts());
        assert_eq!(full.cases["b.y"].reason.as_deref(), Some("why"));
        assert_eq!(flat.unexplained(), ["b.y"]);
        assert!(full.unexplained().is_empty());
        assert_eq!(Expected::parse(&full.to_json()).unwrap(), full);
    }

    #[test]
    fn a_placeholder_reason_is_not_an_explanation() {
        let e = Expected::parse(
            r#"{"cases": {"a": {"verdict": "non_strict", "reason": "UNEXPLAINED: m"}, "b": "informational"}}"#,
        )
        .unwrap();
        assert_eq!(e.unexplained(), ["a"]);
    }
}
