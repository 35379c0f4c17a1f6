//! The conformance runner: runs the cases of [`cases`] against a [`Target`] and turns their
//! outcomes into verdicts ([`verdict`]) and reports ([`report`]).
//!
//! Cases run one after another (several check rates and timing, and the machines are small);
//! each has its own trace and a time budget. Every call event a case receives is checked against
//! the generated JSON Schemas, and a violation fails a case that otherwise passed.

pub mod cases;
pub mod client_role;
pub mod driver;
pub mod embedded;
pub mod expected;
pub mod matrix;
pub mod preflight;
pub mod report;
pub mod target;
pub mod verdict;
pub mod wire;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use cases::{Area, Case, CaseInfo};
pub use target::{Feature, SecondPeer, Target, TargetUser};
pub use verdict::{Failure, KnownFailing, Level, LevelFilter, Outcome, Selection, Verdict};
pub use wire::TraceEntry;

use wire::{Ctx, Problem, Schemas, WebhookLog};

/// Longest a case may take before it counts as failed (the target hung).
const CASE_BUDGET: Duration = Duration::from_secs(90);

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub selection: Selection,
    pub known_failing: KnownFailing,
    pub seed: u64,
    /// Runs each case this many times; the worst outcome counts.
    pub repeat: u32,
    /// Keep the wire trace of every case, not only of those that did not pass.
    pub trace_all: bool,
    /// Longest frame text kept in a trace entry (longer ones are clipped and end with `…`).
    pub trace_text_bytes: usize,
    /// Print a line per case to standard output as it finishes.
    pub progress: bool,
    /// The implementation's name in the report.
    pub label: Option<String>,
    /// Check each setting once before the cases run ([`preflight`]) and stop on the first wrong
    /// one.
    pub preflight: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            selection: Selection::default(),
            known_failing: KnownFailing::default(),
            seed: 1,
            repeat: 1,
            trace_all: false,
            trace_text_bytes: wire::TRACE_TEXT_BYTES,
            progress: false,
            label: None,
            preflight: false,
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub area: String,
    pub level: Level,
    pub title: String,
    pub requirements: Vec<String>,
    pub verdict: Verdict,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<Failure>,
    /// Why the case was unsupported or errored.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Why the expected-results file (`--expected`) says this case does not pass here.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expected_reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub trace: Vec<TraceEntry>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    /// The implementation's name in reports and the results matrix (`--label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub version: String,
    pub protocol_version: u64,
    pub seed: u64,
    pub repeat: u32,
    pub target: serde_json::Value,
    pub duration_ms: u64,
    /// Count per verdict name.
    pub summary: BTreeMap<String, usize>,
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Whether the run as a whole failed: some case is `fail`, `errored` or `fixed`.
    pub fn failed(&self) -> bool {
        self.cases.iter().any(|c| c.verdict.fails_run())
    }

    /// Case id to verdict, the form of the expected-results file.
    pub fn verdicts(&self) -> BTreeMap<String, Verdict> {
        self.cases
            .iter()
            .map(|c| (c.id.clone(), c.verdict))
            .collect()
    }
}

/// The cases a run with `selection` includes, in order.
pub fn selected(selection: &Selection) -> Vec<Case> {
    cases::all()
        .into_iter()
        .filter(|c| selection.includes(c.info.id, c.info.level))
        .collect()
}

fn outcome_of(
    result: Result<Result<Option<String>, Problem>, tokio::time::error::Elapsed>,
    violations: Vec<String>,
    deviations: Vec<Failure>,
) -> Outcome {
    match result {
        Err(_) => Outcome::Failed(Failure {
            message: format!("the case did not finish within {CASE_BUDGET:?}"),
            expected: "the target answers every step".into(),
            actual: "the case hung".into(),
        }),
        Ok(Ok(note)) if violations.is_empty() && deviations.is_empty() => Outcome::Passed { note },
        Ok(Ok(note)) if violations.is_empty() => Outcome::PassedNonStrict {
            note,
            deviation: merge_deviations(deviations),
        },
        Ok(Ok(_)) => Outcome::Failed(Failure {
            message: "received call events break their JSON Schema".into(),
            expected: "every call event valid against schemas/".into(),
            actual: violations.join("\n"),
        }),
        Ok(Err(Problem::Fail(f))) => Outcome::Failed(f),
        Ok(Err(Problem::Unsupported(r))) => Outcome::Unsupported(r),
        Ok(Err(Problem::Errored(e))) => Outcome::Errored(e),
    }
}

/// Several broken SHOULDs as one failure: the first one's message, with the others counted, and
/// every one's expected and actual side.
fn merge_deviations(mut deviations: Vec<Failure>) -> Failure {
    if deviations.len() == 1 {
        return deviations.remove(0);
    }
    let message = format!(
        "{} (and {} more SHOULD broken)",
        deviations[0].message,
        deviations.len() - 1
    );
    let side = |f: fn(&Failure) -> &String| {
        deviations
            .iter()
            .map(|d| format!("{}: {}", d.message, f(d)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Failure {
        message,
        expected: side(|d| &d.expected),
        actual: side(|d| &d.actual),
    }
}

/// How bad an outcome is, to keep the worst of repeats.
fn severity(o: &Outcome) -> u8 {
    match o {
        Outcome::Passed { .. } => 0,
        Outcome::Unsupported(_) => 1,
        Outcome::PassedNonStrict { .. } => 2,
        Outcome::Failed(_) => 3,
        Outcome::Errored(_) => 4,
    }
}

/// Reads the limits the target announces on one connection and holds it to them, unless the
/// user configured limits. A target that cannot be reached keeps the defaults: the cases then
/// report why.
async fn adopt_announced_limits(target: &mut Target, schemas: &Arc<Schemas>) {
    if target.limits_source == target::LimitsSource::Configured {
        return;
    }
    let ctx = Ctx::new(Arc::new(target.clone()), 0, None, schemas.clone());
    if let Ok(c) = wire::Conn::connect(&ctx, "limits").await {
        let limits = c.established["limits"].clone();
        c.close().await;
        target.adopt_announced_limits(&limits);
    }
}

/// Runs the selected cases against `target`. `webhooks` is a listener already started by the
/// caller; without one, a listener is started on `target.webhook_listen` if set.
pub async fn run(
    target: Target,
    opts: &RunOptions,
    webhooks: Option<Arc<WebhookLog>>,
) -> Result<Report, crate::error::ToolError> {
    let began = Instant::now();
    let schemas = Arc::new(Schemas::compile()?);
    let webhooks = match (webhooks, target.webhook_listen) {
        (Some(w), _) => Some(w),
        (None, Some(addr)) => Some(
            wire::listen_webhooks(addr, target.webhook_forward.clone())
                .await?
                .0,
        ),
        (None, None) => None,
    };
    if opts.preflight {
        let target = Arc::new(target.clone());
        let ctx = Ctx::new(target.clone(), opts.seed, webhooks.clone(), schemas.clone());
        preflight::check(&target, &ctx, webhooks.as_ref())
            .await
            .map_err(|e| format!("preflight: {e}"))?;
    }
    let mut target = target;
    adopt_announced_limits(&mut target, &schemas).await;
    let target = Arc::new(target);
    let selected = selected(&opts.selection);
    let total = selected.len();
    let mut results = Vec::with_capacity(total);
    for (i, case) in selected.iter().enumerate() {
        let info = &case.info;
        let missing: Vec<&str> = info
            .needs
            .iter()
            .filter(|f| !target.features.contains(f))
            .map(|f| f.name())
            .collect();
        let started = Instant::now();
        let mut trace = Vec::new();
        let (outcome, repeats) = if missing.is_empty() {
            let mut worst: Option<Outcome> = None;
            let mut passes = 0;
            for attempt in 0..opts.repeat.max(1) {
                let ctx = Ctx::new(
                    target.clone(),
                    opts.seed.wrapping_add(u64::from(attempt)),
                    webhooks.clone(),
                    schemas.clone(),
                )
                .with_trace_text_bytes(opts.trace_text_bytes);
                let result = tokio::time::timeout(CASE_BUDGET, (case.run)(ctx.clone())).await;
                let outcome =
                    outcome_of(result, ctx.take_schema_violations(), ctx.take_deviations());
                let this_trace = ctx.take_trace();
                if matches!(outcome, Outcome::Passed { .. }) {
                    passes += 1;
                }
                if worst
                    .as_ref()
                    .is_none_or(|w| severity(&outcome) > severity(w))
                {
                    trace = this_trace;
                    worst = Some(outcome);
                }
            }
            (worst.unwrap_or(Outcome::Errored("not run".into())), passes)
        } else {
            (
                Outcome::Unsupported(format!(
                    "the target does not declare {}",
                    missing.join(", ")
                )),
                0,
            )
        };
        let listed = opts.known_failing.lists(info.id);
        let verdict = verdict::decide(info.level, &outcome, listed);
        let mut result = CaseResult {
            id: info.id.to_owned(),
            area: info.area.name().to_owned(),
            level: info.level,
            title: info.title.to_owned(),
            requirements: info.requirements.iter().map(|r| (*r).to_owned()).collect(),
            verdict,
            duration_ms: started.elapsed().as_millis() as u64,
            note: None,
            failure: None,
            reason: None,
            expected_reason: None,
            trace: Vec::new(),
        };
        match outcome {
            Outcome::Passed { note } => result.note = note,
            Outcome::PassedNonStrict { note, deviation } => {
                result.note = note;
                result.failure = Some(deviation);
            }
            Outcome::Failed(f) => result.failure = Some(f),
            Outcome::Unsupported(r) | Outcome::Errored(r) => result.reason = Some(r),
        }
        if opts.repeat > 1 && missing.is_empty() {
            let n = format!("passed {repeats} of {} runs", opts.repeat);
            result.note = Some(result.note.map_or(n.clone(), |x| format!("{x}; {n}")));
        }
        if opts.trace_all
            || !matches!(
                verdict,
                Verdict::Pass | Verdict::Informational | Verdict::Unsupported
            )
        {
            result.trace = trace;
        }
        if opts.progress {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "[{:>3}/{total}] {:<13} {} ({} ms)",
                i + 1,
                verdict.name(),
                info.id,
                result.duration_ms
            );
            if let Some(f) = &result.failure {
                let _ = writeln!(out, "          {}", f.message);
            }
            // Why a case did not run, or what an informational case saw.
            match (verdict, &result.reason, &result.note) {
                (Verdict::Errored | Verdict::Unsupported, Some(r), _) => {
                    let _ = writeln!(out, "          {r}");
                }
                (Verdict::Informational, _, Some(n)) => {
                    let _ = writeln!(out, "          {n}");
                }
                _ => {}
            }
        }
        results.push(result);
    }
    let mut summary: BTreeMap<String, usize> = Verdict::ALL
        .iter()
        .map(|v| (v.name().to_owned(), 0))
        .collect();
    for r in &results {
        *summary.entry(r.verdict.name().to_owned()).or_default() += 1;
    }
    Ok(Report {
        tool: "domvia-calls conform".into(),
        label: opts.label.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: crate::limits::PROTOCOL_VERSION,
        seed: opts.seed,
        repeat: opts.repeat.max(1),
        target: target.summary(),
        duration_ms: began.elapsed().as_millis() as u64,
        summary,
        cases: results,
    })
}
