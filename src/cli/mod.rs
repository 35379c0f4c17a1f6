//! Command-line parsing and the file I/O of each command. Every protocol decision is made by the
//! library; functions here only gather inputs and report results.

#[cfg(feature = "server")]
mod bench;
#[cfg(feature = "conform")]
mod bench_interop;
#[cfg(feature = "server")]
mod bench_output;
#[cfg(all(feature = "media", feature = "trusted"))]
mod call;
#[cfg(feature = "conform")]
mod conform;
mod diff;
#[cfg(feature = "conform")]
mod drive;
#[cfg(feature = "conform")]
mod drive_browser;
#[cfg(all(feature = "server", feature = "client"))]
mod load;
#[cfg(feature = "trusted")]
mod serve;
mod sign;

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use domvia_calls::{schema, spec, vectors};
use serde_json::Value;

/// Protocol specification and conformance kit for call signaling over a Pusher-compatible
/// realtime service.
#[derive(Debug, Parser)]
#[command(name = "domvia-calls", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// Whether the command only prints and exits (no sockets): the commands whose output is
    /// piped into `head` and the like. Network commands keep Rust's ignored SIGPIPE, because a
    /// write to a socket the peer reset (TLS records go out with `writev`, which has no
    /// MSG_NOSIGNAL) would otherwise kill a server.
    pub fn only_prints(&self) -> bool {
        matches!(
            self.command,
            Some(
                Command::Check { .. }
                    | Command::Vectors { .. }
                    | Command::Schemas { .. }
                    | Command::Asyncapi { .. }
                    | Command::Spec { .. }
                    | Command::Sign { .. }
            )
        )
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the built-in self-check: every conformance vector against this implementation's core;
    /// with `--root .` in a checkout, also the schema drift check and the spec's requirement check.
    Check {
        /// Repository root to check on disk; without it the copies built into the binary are used.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Run the language-neutral conformance vectors against this implementation's core.
    Vectors {
        /// Directory of vector files; without it the vectors built into the binary are used.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print every case, not only failures.
        #[arg(long)]
        verbose: bool,
    },
    /// Generate or check the JSON Schemas of the call events.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Write or check the AsyncAPI 3.0 document of the protocol (`spec/asyncapi.json`).
    Asyncapi {
        #[command(subcommand)]
        action: AsyncapiAction,
    },
    /// Extract, export or check the requirement list of the spec.
    Spec {
        #[command(subcommand)]
        action: SpecAction,
    },
    /// Benchmarks with machine-readable results, each against a baseline measured in the same run.
    #[cfg(feature = "server")]
    Bench {
        #[command(subcommand)]
        kind: bench::BenchKind,
    },
    /// Call-shaped load against any Pusher-compatible realtime server (the reference server, started
    /// as a child process, when no --target is given): calls placed open-loop at a rate, latency
    /// per event kind from the scheduled and the actual send, losses, 4301 refusals, call setup
    /// time, server and generator CPU and memory; `--find-saturation` searches the highest rate
    /// that holds.
    #[cfg(all(feature = "server", feature = "client"))]
    Load(Box<load::LoadArgs>),
    /// Make a real call: with no flags, alice calls bob through embedded servers and the timeline
    /// and stored record are printed; with flags, join a deployment as one party.
    #[cfg(all(feature = "media", feature = "trusted"))]
    Call(call::CallArgs),
    /// Test a Pusher-protocol realtime service (and optionally its trusted server) against the
    /// protocol; with no --target, start the reference servers in-process and test them (the
    /// default when no command is given).
    #[cfg(feature = "conform")]
    Conform(Box<conform::ConformArgs>),
    /// The reference client behind the client-driver contract: commands as JSON lines on stdin,
    /// reports on stdout (`conformance/client-driver.md`).
    #[cfg(feature = "conform")]
    Drive {
        /// Drive the demo page's JavaScript client (pusher-js, the browser's WebRTC) in headless
        /// Chromium instead of the Rust client.
        #[arg(long)]
        browser: bool,
    },
    /// Run the reference realtime server and trusted server (or one role alone).
    #[cfg(feature = "trusted")]
    Serve(Box<serve::ServeArgs>),
    /// Compute or verify any signature of the protocol, showing the exact string that is signed.
    Sign {
        #[command(subcommand)]
        kind: sign::SignKind,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasAction {
    /// Write the generated schemas into DIR.
    Write {
        /// The schemas directory.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
    /// Exit non-zero if DIR differs from the generated schemas in any way.
    Check {
        /// The schemas directory.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
    /// Classify every change against another version (a directory or a git ref) as breaking,
    /// compatible or unclassified; exit 1 on breaking or unclassified changes unless the protocol
    /// version was bumped.
    Diff {
        /// A git ref (`main`, `v1.2.0`, `HEAD~1`), a repository checkout, or a schemas directory.
        #[arg(long)]
        against: String,
        /// This version's schemas.
        /// The schemas directory.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
        /// This version's spec (for `requirements.json`).
        #[arg(long, default_value = "spec")]
        spec_dir: PathBuf,
        /// `text` for people, `json` for tools.
        #[arg(long, value_enum, default_value = "text")]
        format: diff::Format,
        /// Write the report here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AsyncapiAction {
    /// Write the generated document.
    Write {
        /// The AsyncAPI document.
        #[arg(long, default_value = domvia_calls::asyncapi::FILE)]
        file: PathBuf,
    },
    /// Exit non-zero if the file differs from the generated document.
    Check {
        /// The AsyncAPI document.
        #[arg(long, default_value = domvia_calls::asyncapi::FILE)]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SpecAction {
    /// Write `requirements.json` from the spec's markdown files.
    Export {
        /// The spec directory (its markdown files and `requirements.json`).
        #[arg(long, default_value = "spec")]
        dir: PathBuf,
    },
    /// Check requirement markup and that `requirements.json` is current.
    Check {
        /// The spec directory (its markdown files and `requirements.json`).
        #[arg(long, default_value = "spec")]
        dir: PathBuf,
    },
    /// Print the requirements, one line each.
    List {
        /// The spec directory (its markdown files and `requirements.json`).
        #[arg(long, default_value = "spec")]
        dir: PathBuf,
    },
}

pub type CliResult = Result<bool, String>;

/// With no command: the main job, the conformance suite against the embedded reference servers
/// (or the self-check in a build without the runner).
fn default_command() -> Command {
    #[cfg(feature = "conform")]
    if let Ok(Cli {
        command: Some(c), ..
    }) = Cli::try_parse_from(["domvia-calls", "conform"])
    {
        return c;
    }
    Command::Check { root: None }
}

pub fn run(cli: Cli) -> CliResult {
    match cli.command.unwrap_or_else(default_command) {
        Command::Check { root } => check_all(root.as_deref()),
        Command::Vectors { dir, verbose } => run_vectors(dir.as_deref(), verbose),
        Command::Schemas { action } => match action {
            SchemasAction::Write { dir } => schemas_write(&dir),
            SchemasAction::Check { dir } => schemas_check(&dir),
            SchemasAction::Diff {
                against,
                dir,
                spec_dir,
                format,
                output,
            } => diff::run(&against, &dir, &spec_dir, format, output.as_deref()),
        },
        Command::Asyncapi { action } => match action {
            AsyncapiAction::Write { file } => {
                fs::write(&file, domvia_calls::asyncapi::text())
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                println!("wrote {}", file.display());
                Ok(true)
            }
            AsyncapiAction::Check { file } => {
                let current = fs::read_to_string(&file).unwrap_or_default();
                let ok = current == domvia_calls::asyncapi::text();
                if ok {
                    println!(
                        "asyncapi: {} matches the generated document",
                        file.display()
                    );
                } else {
                    println!(
                        "drift: {} differs (run `domvia-calls asyncapi write`)",
                        file.display()
                    );
                }
                Ok(ok)
            }
        },
        Command::Spec { action } => match action {
            SpecAction::Export { dir } => spec_export(&dir),
            SpecAction::Check { dir } => spec_check(&dir),
            SpecAction::List { dir } => spec_list(&dir),
        },
        Command::Sign { kind } => sign::run(kind),
        #[cfg(feature = "conform")]
        Command::Conform(args) => conform::run(*args),
        #[cfg(feature = "trusted")]
        Command::Serve(args) => serve::run(*args),
        #[cfg(feature = "conform")]
        Command::Drive { browser: false } => drive::run(),
        #[cfg(feature = "conform")]
        Command::Drive { browser: true } => drive_browser::run(),
        #[cfg(all(feature = "media", feature = "trusted"))]
        Command::Call(args) => call::run(args),
        #[cfg(feature = "server")]
        Command::Bench { kind } => bench::run(kind),
        #[cfg(all(feature = "server", feature = "client"))]
        Command::Load(args) => load::run(*args),
    }
}

/// Vector files built into the binary, so `domvia-calls vectors` works from any directory.
pub const EMBEDDED_VECTORS: [(&str, &str); 5] = [
    (
        "channel-names.json",
        include_str!("../../conformance/vectors/channel-names.json"),
    ),
    (
        "envelope.json",
        include_str!("../../conformance/vectors/envelope.json"),
    ),
    (
        "events.json",
        include_str!("../../conformance/vectors/events.json"),
    ),
    (
        "frames.json",
        include_str!("../../conformance/vectors/frames.json"),
    ),
    (
        "signatures.json",
        include_str!("../../conformance/vectors/signatures.json"),
    ),
];

/// The multi-threaded runtime every async command runs on.
#[cfg(any(feature = "server", feature = "client"))]
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn json_files(dir: &Path) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    Ok(names)
}

fn run_vectors(dir: Option<&Path>, verbose: bool) -> CliResult {
    let files: Vec<(String, String)> = match dir {
        Some(dir) => json_files(dir)?
            .into_iter()
            .map(|n| read(&dir.join(&n)).map(|t| (n, t)))
            .collect::<Result<_, _>>()?,
        None => EMBEDDED_VECTORS
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect(),
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for (name, text) in files {
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{name} is not JSON: {e}"))?;
        let results = vectors::run_file(&name, &doc);
        let file_failed = results.iter().filter(|r| r.failure.is_some()).count();
        for r in &results {
            match &r.failure {
                Some(f) => println!("FAIL {}/{}/{}: {f}", r.file, r.op, r.id),
                None if verbose => println!("ok   {}/{}/{}", r.file, r.op, r.id),
                None => {}
            }
        }
        println!(
            "{name}: {} passed, {file_failed} failed",
            results.len() - file_failed
        );
        passed += results.len() - file_failed;
        failed += file_failed;
    }
    println!("vectors: {passed} passed, {failed} failed");
    Ok(failed == 0 && passed > 0)
}

fn schemas_write(dir: &Path) -> CliResult {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for stale in schema::drift(&json_files(dir)?, |_| None) {
        if let schema::Drift::Extra(name) = stale {
            fs::remove_file(dir.join(&name)).map_err(|e| format!("cannot remove {name}: {e}"))?;
        }
    }
    let files = schema::files();
    for (name, contents) in &files {
        fs::write(dir.join(name), contents).map_err(|e| format!("cannot write {name}: {e}"))?;
    }
    println!("wrote {} schema files to {}", files.len(), dir.display());
    Ok(true)
}

fn schemas_check(dir: &Path) -> CliResult {
    // Outside a checkout there is nothing to check, and "run schemas write" would be bad advice.
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a directory: run this in a checkout of the repository, or give --dir",
            dir.display()
        ));
    }
    let existing = json_files(dir)?;
    let drift = schema::drift(&existing, |name| fs::read_to_string(dir.join(name)).ok());
    for d in &drift {
        println!("drift: {d}");
    }
    if drift.is_empty() {
        println!(
            "schemas: {} files match the generated schemas",
            schema::files().len()
        );
    }
    Ok(drift.is_empty())
}

fn spec_files(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| read(&dir.join(&n)).map(|t| (n, t)))
        .collect()
}

fn collect_spec(dir: &Path) -> Result<Vec<spec::Requirement>, String> {
    spec::collect(&spec_files(dir)?).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("spec markup errors:\n{}", lines.join("\n"))
    })
}

fn spec_export(dir: &Path) -> CliResult {
    let reqs = collect_spec(dir)?;
    let path = dir.join(spec::EXPORT_FILE);
    fs::write(&path, spec::export(&reqs)).map_err(|e| format!("cannot write: {e}"))?;
    println!("wrote {} requirements to {}", reqs.len(), path.display());
    Ok(true)
}

fn spec_check(dir: &Path) -> CliResult {
    let reqs = collect_spec(dir)?;
    let current = fs::read_to_string(dir.join(spec::EXPORT_FILE)).unwrap_or_default();
    if current != spec::export(&reqs) {
        println!(
            "drift: {} is not current (run `domvia-calls spec export`)",
            spec::EXPORT_FILE
        );
        return Ok(false);
    }
    let musts = reqs.iter().filter(|r| r.level == spec::Level::Must).count();
    println!(
        "spec: {} requirements ({musts} MUST), IDs unique and well formed, export current",
        reqs.len()
    );
    Ok(true)
}

fn spec_list(dir: &Path) -> CliResult {
    for r in collect_spec(dir)? {
        let level = format!("{:?}", r.level).to_uppercase();
        println!(
            "{:<10} {:<6} {:<32} {}",
            r.id,
            level,
            r.subjects.join(","),
            r.text
        );
    }
    Ok(true)
}

fn check_all(root: Option<&Path>) -> CliResult {
    let mut ok = match root {
        Some(root) => run_vectors(Some(&root.join("conformance/vectors")), false)?,
        None => run_vectors(None, false)?,
    };
    if let Some(root) = root {
        ok &= schemas_check(&root.join("schemas"))?;
        ok &= spec_check(&root.join("spec"))?;
        let asyncapi =
            fs::read_to_string(root.join(domvia_calls::asyncapi::FILE)).unwrap_or_default();
        let current = asyncapi == domvia_calls::asyncapi::text();
        println!(
            "asyncapi: {}",
            if current {
                "current"
            } else {
                "drift (run `domvia-calls asyncapi write`)"
            }
        );
        ok &= current;
    }
    println!("{}", if ok { "check: ok" } else { "check: FAILED" });
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn every_flag_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command itself)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "domvia-calls", &mut missing);
        assert!(
            missing.is_empty(),
            "without a description:\n{}",
            missing.join("\n")
        );
    }
}
