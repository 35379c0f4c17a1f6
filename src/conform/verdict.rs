//! What a case's outcome means for the run: the verdict rules, case selection, the known-failing
//! list and the expected-results diff. Pure: no I/O and no clock, so every rule is unit-tested.
//!
//! Invariants:
//! - a run fails exactly when some case is `fail`, `errored` or `fixed` ([`Verdict::fails_run`]);
//! - a case listed as known-failing that passes becomes `fixed`, so stale lists are caught;
//! - `unsupported` is decided before the case runs, from the features the target declared.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How strongly the spec asks for what a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A MUST: breaking it fails the run.
    Must,
    /// A SHOULD: breaking it is `non_strict`.
    Should,
    /// A measurement or observation that never fails the run.
    Info,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Info => "info",
        }
    }
}

/// The final word on one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// A SHOULD was broken.
    NonStrict,
    /// An observation; never fails.
    Informational,
    /// The target did not declare a feature the case needs.
    Unsupported,
    /// The kit could not run the case (the target was unreachable, a setup step failed).
    Errored,
    /// Listed as known-failing and still failing.
    KnownFailing,
    /// Listed as known-failing but now passing: the list is stale.
    Fixed,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::NonStrict,
        Verdict::Informational,
        Verdict::Unsupported,
        Verdict::Errored,
        Verdict::KnownFailing,
        Verdict::Fixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NonStrict => "non_strict",
            Verdict::Informational => "informational",
            Verdict::Unsupported => "unsupported",
            Verdict::Errored => "errored",
            Verdict::KnownFailing => "known_failing",
            Verdict::Fixed => "fixed",
        }
    }

    /// Whether this verdict makes the whole run fail.
    pub fn fails_run(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Errored | Verdict::Fixed)
    }

    /// Whether the case found something wrong with the target (for detection statistics).
    pub fn found_a_problem(self) -> bool {
        matches!(
            self,
            Verdict::Fail | Verdict::NonStrict | Verdict::KnownFailing
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong in a case, with both sides of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub message: String,
    pub expected: String,
    pub actual: String,
}

/// How a case ended, before the verdict rules apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target did what the case checks; `note` is an observation worth reporting.
    Passed { note: Option<String> },
    /// The target did what the case requires but broke a SHOULD on the way (for instance it
    /// refused a bad request, as it must, with another status than the one the spec names).
    /// Autobahn calls this NON-STRICT.
    PassedNonStrict {
        note: Option<String>,
        deviation: Failure,
    },
    /// The target did not.
    Failed(Failure),
    /// The case does not apply to this target.
    Unsupported(String),
    /// The case could not be carried out.
    Errored(String),
}

/// The verdict for a case of `level` that ended with `outcome`; `listed` says whether the case is
/// on the known-failing list.
pub fn decide(level: Level, outcome: &Outcome, listed: bool) -> Verdict {
    match (outcome, level) {
        (Outcome::Unsupported(_), _) => Verdict::Unsupported,
        (Outcome::Errored(_), _) => Verdict::Errored,
        (Outcome::Passed { .. } | Outcome::PassedNonStrict { .. }, Level::Info) => {
            Verdict::Informational
        }
        (Outcome::Passed { .. }, _) if listed => Verdict::Fixed,
        (Outcome::Passed { .. }, _) => Verdict::Pass,
        (Outcome::PassedNonStrict { .. }, _) if listed => Verdict::KnownFailing,
        (Outcome::PassedNonStrict { .. }, _) => Verdict::NonStrict,
        (Outcome::Failed(_), Level::Info) => Verdict::Informational,
        (Outcome::Failed(_), _) if listed => Verdict::KnownFailing,
        (Outcome::Failed(_), Level::Must) => Verdict::Fail,
        (Outcome::Failed(_), Level::Should) => Verdict::NonStrict,
    }
}

/// Which levels a run includes (`--level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelFilter {
    Must,
    Should,
    #[default]
    All,
}

impl LevelFilter {
    pub fn includes(self, level: Level) -> bool {
        match self {
            LevelFilter::Must => level == Level::Must,
            LevelFilter::Should => level != Level::Info,
            LevelFilter::All => true,
        }
    }
}

/// Matches a case id against a pattern: `*` stands for any run of characters, and a pattern
/// without `*` also matches every id that starts with it followed by `.` (a whole area or group).
pub fn pattern_matches(pattern: &str, id: &str) -> bool {
    if !pattern.contains('*') {
        return id == pattern
            || id
                .strip_prefix(pattern)
                .is_some_and(|rest| rest.starts_with('.'));
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !id.starts_with(first) || id.len() < first.len() + last.len() || !id.ends_with(last) {
        return false;
    }
    let mut rest = &id[first.len()..id.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// `--only`, `--skip` and `--level` together.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub level: LevelFilter,
}

impl Selection {
    pub fn includes(&self, id: &str, level: Level) -> bool {
        self.level.includes(level)
            && (self.only.is_empty() || self.only.iter().any(|p| pattern_matches(p, id)))
            && !self.skip.iter().any(|p| pattern_matches(p, id))
    }
}

/// The known-failing list: one case id or pattern per line; `#` starts a comment.
#[derive(Debug, Clone, Default)]
pub struct KnownFailing {
    patterns: Vec<String>,
}

impl KnownFailing {
    pub fn parse(text: &str) -> KnownFailing {
        KnownFailing {
            patterns: text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    pub fn lists(&self, id: &str) -> bool {
        self.patterns.iter().any(|p| pattern_matches(p, id))
    }

    /// Patterns that match none of `ids` (probably renamed or removed cases).
    pub fn unmatched<'a>(&'a self, ids: &[&str]) -> Vec<&'a str> {
        self.patterns
            .iter()
            .filter(|p| !ids.iter().any(|id| pattern_matches(p, id)))
            .map(String::as_str)
            .collect()
    }
}

/// One difference between expected and actual verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictChange {
    pub case: String,
    /// None when the case is new.
    pub expected: Option<Verdict>,
    /// None when the case no longer ran.
    pub actual: Option<Verdict>,
}

/// Compares the verdicts of a run with a committed expected-results map.
pub fn diff_expected(
    expected: &BTreeMap<String, Verdict>,
    actual: &BTreeMap<String, Verdict>,
) -> Vec<VerdictChange> {
    let mut ids: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let (e, a) = (expected.get(id).copied(), actual.get(id).copied());
            (e != a).then(|| VerdictChange {
                case: id.clone(),
                expected: e,
                actual: a,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Outcome {
        Outcome::Failed(Failure {
            message: "m".into(),
            expected: "e".into(),
            actual: "a".into(),
        })
    }

    #[test]
    fn verdicts_follow_level_and_list() {
        let passed = Outcome::Passed { note: None };
        assert_eq!(decide(Level::Must, &passed, false), Verdict::Pass);
        assert_eq!(decide(Level::Must, &passed, true), Verdict::Fixed);
        assert_eq!(decide(Level::Must, &failed(), false), Verdict::Fail);
        assert_eq!(decide(Level::Must, &failed(), true), Verdict::KnownFailing);
        assert_eq!(decide(Level::Should, &failed(), false), Verdict::NonStrict);
        assert_eq!(
            decide(Level::Info, &failed(), false),
            Verdict::Informational
        );
        assert_eq!(decide(Level::Info, &passed, true), Verdict::Informational);
        let unsupported = Outcome::Unsupported("no presence".into());
        assert_eq!(
            decide(Level::Must, &unsupported, true),
            Verdict::Unsupported
        );
        let errored = Outcome::Errored("refused".into());
        assert_eq!(decide(Level::Must, &errored, true), Verdict::Errored);
        let soft = Outcome::PassedNonStrict {
            note: None,
            deviation: Failure {
                message: "m".into(),
                expected: "e".into(),
                actual: "a".into(),
            },
        };
        assert_eq!(decide(Level::Must, &soft, false), Verdict::NonStrict);
        assert_eq!(decide(Level::Should, &soft, false), Verdict::NonStrict);
        assert_eq!(decide(Level::Must, &soft, true), Verdict::KnownFailing);
        assert_eq!(decide(Level::Info, &soft, false), Verdict::Informational);
    }

    #[test]
    fn only_fail_errored_and_fixed_fail_the_run() {
        let failing: Vec<Verdict> = Verdict::ALL.into_iter().filter(|v| v.fails_run()).collect();
        assert_eq!(failing, [Verdict::Fail, Verdict::Errored, Verdict::Fixed]);
    }

    #[test]
    fn patterns_match_ids_groups_and_globs() {
        assert!(pattern_matches("events.no-echo", "events.no-echo"));
        assert!(pattern_matches("events", "events.no-echo"));
        assert!(!pattern_matches("event", "events.no-echo"));
        assert!(pattern_matches("*.no-echo", "events.no-echo"));
        assert!(pattern_matches("e*o", "events.no-echo"));
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("a*b*c", "a-b-c"));
        assert!(!pattern_matches("a*b*c", "a-c-b"));
        assert!(!pattern_matches("ab*ba", "aba"));
    }

    #[test]
    fn selection_combines_only_skip_and_level() {
        let s = Selection {
            only: vec!["auth".into(), "events.*".into()],
            skip: vec!["events.rate*".into()],
            level: LevelFilter::Should,
        };
        assert!(s.includes("auth.private", Level::Must));
        assert!(s.includes("events.no-echo", Level::Should));
        assert!(!s.includes("events.no-echo", Level::Info));
        assert!(!s.includes("events.rate-limit", Level::Must));
        assert!(!s.includes("http.trigger", Level::Must));
    }

    #[test]
    fn known_failing_lists_patterns_and_reports_stale_ones() {
        let k = KnownFailing::parse("# ours\nevents.no-echo  # see tracker\n\nhttp.*\ngone.case\n");
        assert!(k.lists("events.no-echo"));
        assert!(k.lists("http.stale-timestamp"));
        assert!(!k.lists("auth.private"));
        assert_eq!(k.unmatched(&["events.no-echo", "http.x"]), ["gone.case"]);
    }

    #[test]
    fn expected_diff_reports_changed_new_and_missing_cases() {
        let e = BTreeMap::from([
            ("a".to_owned(), Verdict::Pass),
            ("b".to_owned(), Verdict::Pass),
            ("c".to_owned(), Verdict::Unsupported),
        ]);
        let a = BTreeMap::from([
            ("a".to_owned(), Verdict::Pass),
            ("b".to_owned(), Verdict::Fail),
            ("d".to_owned(), Verdict::Pass),
        ]);
        let d = diff_expected(&e, &a);
        let cases: Vec<_> = d.iter().map(|c| c.case.as_str()).collect();
        assert_eq!(cases, ["b", "c", "d"]);
        assert_eq!(d[0].actual, Some(Verdict::Fail));
        assert_eq!(d[1].actual, None);
        assert_eq!(d[2].expected, None);
    }
}
