//! `domvia-calls schemas diff`: loads two versions of the protocol (this checkout and a directory
//! or git ref) and prints the classified changes from [`domvia_calls::compat`].

use std::path::Path;
use std::process::Command;

use clap::ValueEnum;
use domvia_calls::compat::{self, Snapshot};
use serde_json::Value;

use super::CliResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
    /// GitHub Actions annotations (`::error file=...::message`).
    Github,
}

fn parse(name: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{name} is not JSON: {e}"))
}

fn from_dirs(schemas: &Path, spec: &Path) -> Result<Snapshot, String> {
    let mut snap = Snapshot::default();
    let entries = std::fs::read_dir(schemas)
        .map_err(|e| format!("cannot list {}: {e}", schemas.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(entry.path()).map_err(|e| format!("{name}: {e}"))?;
            snap.schemas.insert(name.clone(), parse(&name, &text)?);
        }
    }
    if !snap.schemas.contains_key("index.json") {
        return Err(format!("{} has no index.json", schemas.display()));
    }
    let reqs = spec.join("requirements.json");
    if let Ok(text) = std::fs::read_to_string(&reqs) {
        snap.requirements = Some(parse("requirements.json", &text)?);
    }
    Ok(snap)
}

fn git(args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The schemas and requirements of a git ref, read with `git show` from the current repository.
fn from_git(reference: &str, schemas_dir: &Path, spec_dir: &Path) -> Result<Snapshot, String> {
    let schemas = schemas_dir.to_string_lossy();
    let list = git(&["ls-tree", "--name-only", &format!("{reference}:{schemas}")])?;
    let mut snap = Snapshot::default();
    for name in list.lines().filter(|n| n.ends_with(".json")) {
        let text = git(&["show", &format!("{reference}:{schemas}/{name}")])?;
        snap.schemas.insert(name.to_owned(), parse(name, &text)?);
    }
    let spec = spec_dir.to_string_lossy();
    if let Ok(text) = git(&["show", &format!("{reference}:{spec}/requirements.json")]) {
        snap.requirements = Some(parse("requirements.json", &text)?);
    }
    Ok(snap)
}

fn load_against(against: &str, schemas_dir: &Path, spec_dir: &Path) -> Result<Snapshot, String> {
    let path = Path::new(against);
    if path.join("index.json").is_file() {
        let spec = path.parent().map(|p| p.join("spec")).unwrap_or_default();
        return from_dirs(path, &spec);
    }
    if path.join("schemas").join("index.json").is_file() {
        return from_dirs(&path.join("schemas"), &path.join("spec"));
    }
    from_git(against, schemas_dir, spec_dir)
}

pub fn run(
    against: &str,
    dir: &Path,
    spec_dir: &Path,
    format: Format,
    output: Option<&Path>,
) -> CliResult {
    let old = load_against(against, dir, spec_dir)?;
    let new = from_dirs(dir, spec_dir)?;
    let report = compat::compare(&old, &new);
    let text = match format {
        Format::Text => compat::to_text(&report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&serde_json::json!({
                "old_version": report.old_version,
                "new_version": report.new_version,
                "fails": report.fails(),
                "changes": report.changes,
            }))
            .map_err(|e| e.to_string())?;
            s.push('\n');
            s
        }
        Format::Junit => compat::to_junit(&report),
        Format::Github => compat::to_github(&report),
    };
    match output {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(!report.fails())
}
