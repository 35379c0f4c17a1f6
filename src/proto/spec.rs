//! The requirement list of `spec/`: extraction, checks and the machine-readable export.
//!
//! A requirement is a paragraph or list item that starts with a bold ID and a parenthesized list of
//! subjects, then the normative sentence(s):
//!
//! ```text
//! - **[CHAN-003]** (client, realtime-server) A receiver MUST ...
//! ```
//!
//! It runs until the next blank line, heading, list item or requirement. Invariants checked by
//! [`collect`]: IDs are `AREA-NNN` with a known area and three digits, unique across all files;
//! each names at least one known subject; each uses at least one RFC 2119 keyword in capitals, and
//! its level is the strongest one used (MUST > SHOULD > MAY).

use serde::Serialize;

/// Areas and the spec section each belongs to.
pub const AREAS: [(&str, &str); 12] = [
    ("TRN", "transport"),
    ("CHAN", "channel names"),
    ("SIGN", "signing"),
    ("EVT", "call events"),
    ("FLOW", "call flow"),
    ("PRIV", "strong privacy"),
    ("LIM", "rate limits and sizes"),
    ("SRV", "trusted server"),
    ("MEDIA", "media"),
    ("STATE", "call state machine"),
    ("SEC", "security"),
    ("VER", "versioning"),
];

/// Who a requirement binds.
pub const SUBJECTS: [&str; 4] = ["realtime-server", "trusted-server", "client", "any"];

/// Strength of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    May,
    Should,
    Must,
}

/// One requirement of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub id: String,
    pub area: String,
    pub level: Level,
    pub subjects: Vec<String>,
    pub file: String,
    pub text: String,
}

/// A defect in the spec's requirement markup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("{file}:{line}: `{id}` is not AREA-NNN with a known area")]
    MalformedId {
        file: String,
        line: usize,
        id: String,
    },
    #[error("{file}:{line}: [{id}] has no `(subjects)` list after the ID")]
    MissingSubjects {
        file: String,
        line: usize,
        id: String,
    },
    #[error("{file}:{line}: [{id}] names unknown subject `{subject}`")]
    UnknownSubject {
        file: String,
        line: usize,
        id: String,
        subject: String,
    },
    #[error("{file}:{line}: [{id}] uses no RFC 2119 keyword")]
    NoKeyword {
        file: String,
        line: usize,
        id: String,
    },
    #[error("[{id}] is defined twice: {first} and {second}")]
    Duplicate {
        id: String,
        first: String,
        second: String,
    },
}

/// The strongest RFC 2119 keyword in `text` (capitalized words only).
fn level_of(text: &str) -> Option<Level> {
    let words = text.split(|c: char| !c.is_ascii_alphabetic());
    words
        .filter_map(|w| match w {
            "MUST" | "REQUIRED" | "SHALL" => Some(Level::Must),
            "SHOULD" | "RECOMMENDED" => Some(Level::Should),
            "MAY" | "OPTIONAL" => Some(Level::May),
            _ => None,
        })
        .max()
}

fn is_well_formed_id(id: &str) -> bool {
    let Some((area, number)) = id.split_once('-') else {
        return false;
    };
    AREAS.iter().any(|(a, _)| *a == area)
        && number.len() == 3
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Starts a new block: a heading, a list item, or a blank line.
fn is_block_start(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty()
        || t.starts_with('#')
        || t.starts_with("- ")
        || t.starts_with("* ")
        || t.starts_with("**[")
        || t.starts_with("```")
        || t.starts_with('|')
}

/// Parses the requirements of one markdown file. Errors are collected, not fatal.
pub fn parse_file(file: &str, text: &str) -> (Vec<Requirement>, Vec<SpecError>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut reqs = Vec::new();
    let mut errors = Vec::new();
    let mut in_code = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let body = line
            .trim_start()
            .trim_start_matches("- ")
            .trim_start_matches("* ");
        let Some(rest) = body.strip_prefix("**[").filter(|_| !in_code) else {
            i += 1;
            continue;
        };
        let line_no = i + 1;
        let Some((id, after)) = rest.split_once("]**") else {
            i += 1;
            continue;
        };
        let mut text_parts = vec![after.trim().to_owned()];
        i += 1;
        while i < lines.len() && !is_block_start(lines[i]) {
            text_parts.push(lines[i].trim().to_owned());
            i += 1;
        }
        let full = text_parts.join(" ");
        let err_ctx = (file.to_owned(), line_no, id.to_owned());
        if !is_well_formed_id(id) {
            errors.push(SpecError::MalformedId {
                file: err_ctx.0,
                line: err_ctx.1,
                id: err_ctx.2,
            });
            continue;
        }
        let Some((subjects, statement)) = full
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .map(|(s, r)| (s, r.trim()))
        else {
            errors.push(SpecError::MissingSubjects {
                file: err_ctx.0,
                line: err_ctx.1,
                id: err_ctx.2,
            });
            continue;
        };
        let subjects: Vec<String> = subjects.split(',').map(|s| s.trim().to_owned()).collect();
        if let Some(bad) = subjects.iter().find(|s| !SUBJECTS.contains(&s.as_str())) {
            errors.push(SpecError::UnknownSubject {
                file: err_ctx.0,
                line: err_ctx.1,
                id: err_ctx.2,
                subject: bad.clone(),
            });
            continue;
        }
        let Some(level) = level_of(statement) else {
            errors.push(SpecError::NoKeyword {
                file: err_ctx.0,
                line: err_ctx.1,
                id: err_ctx.2,
            });
            continue;
        };
        reqs.push(Requirement {
            id: id.to_owned(),
            area: id.split('-').next().unwrap_or_default().to_owned(),
            level,
            subjects,
            file: file.to_owned(),
            text: statement.to_owned(),
        });
    }
    (reqs, errors)
}

/// Parses every spec file (`(file name, text)`, in a stable order) and checks IDs are unique.
pub fn collect(files: &[(String, String)]) -> Result<Vec<Requirement>, Vec<SpecError>> {
    let mut all: Vec<Requirement> = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in files {
        let (reqs, errs) = parse_file(name, text);
        errors.extend(errs);
        for r in reqs {
            if let Some(first) = all.iter().find(|o| o.id == r.id) {
                errors.push(SpecError::Duplicate {
                    id: r.id.clone(),
                    first: first.file.clone(),
                    second: r.file.clone(),
                });
            } else {
                all.push(r);
            }
        }
    }
    if errors.is_empty() {
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    } else {
        Err(errors)
    }
}

/// File name of the export inside `spec/`.
pub const EXPORT_FILE: &str = "requirements.json";

/// The machine-readable export: `{ "requirements": [...] }`, pretty-printed with a final newline.
pub fn export(reqs: &[Requirement]) -> String {
    let mut s = serde_json::to_string_pretty(&serde_json::json!({
        "format": 1,
        "requirements": reqs,
    }))
    .expect("requirements serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_level_subjects_and_multi_line_text() {
        let text = "# Title\n\n- **[CHAN-001]** (client, realtime-server) A receiver MUST refuse\n  names over the limit and SHOULD say why.\n- **[CHAN-002]** (any) Senders MAY add members.\n";
        let (reqs, errs) = parse_file("02.md", text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].level, Level::Must);
        assert_eq!(reqs[0].subjects, ["client", "realtime-server"]);
        assert_eq!(
            reqs[0].text,
            "A receiver MUST refuse names over the limit and SHOULD say why."
        );
        assert_eq!(reqs[1].level, Level::May);
    }

    #[test]
    fn reports_every_markup_defect() {
        let text = "**[CHAN-1]** (any) MUST.\n\n**[NOPE-001]** (any) MUST.\n\n**[CHAN-003]** MUST.\n\n**[CHAN-004]** (robots) MUST.\n\n**[CHAN-005]** (any) lower-case must only.\n";
        let (_, errs) = parse_file("x.md", text);
        let kinds: Vec<_> = errs
            .iter()
            .map(|e| match e {
                SpecError::MalformedId { .. } => "id",
                SpecError::MissingSubjects { .. } => "subjects",
                SpecError::UnknownSubject { .. } => "subject",
                SpecError::NoKeyword { .. } => "keyword",
                SpecError::Duplicate { .. } => "dup",
            })
            .collect();
        assert_eq!(kinds, ["id", "id", "subjects", "subject", "keyword"]);
    }

    #[test]
    fn duplicates_across_files_are_refused() {
        let a = ("a.md".to_owned(), "**[EVT-001]** (any) MUST.\n".to_owned());
        let b = ("b.md".to_owned(), "**[EVT-001]** (any) MUST.\n".to_owned());
        let errs = collect(&[a, b]).unwrap_err();
        assert!(matches!(errs[0], SpecError::Duplicate { .. }));
    }

    #[test]
    fn ids_inside_code_blocks_are_not_requirements() {
        let text = "```\n**[EVT-009]** (any) MUST.\n```\n";
        assert!(parse_file("x.md", text).0.is_empty());
    }
}
