//! Direction-aware compatibility of two versions of the protocol: the event schemas and the
//! spec's requirement list. Every difference becomes a [`Change`] with a stable rule ID, a class
//! (breaking, compatible, unclassified) and a message. The rules are the normative text of
//! `spec/11-versioning.md`.
//!
//! Direction matters: an event that clients both send and receive (`both`) must stay readable by
//! old receivers *and* keep accepting what old senders produce, so narrowing and widening both
//! break it; an event clients only consume (`consumed`) may narrow freely, since its producer is
//! upgraded first. Schemas are compared by meaning (parsed JSON, `$ref`s resolved), so reformatting
//! or reordering changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// How a change affects existing implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Compatible,
    Breaking,
    /// The tool cannot decide; a person must.
    Unclassified,
}

/// Who produces and who consumes an event, from the clients' point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Clients send and receive it (every `call.*` event today).
    Both,
    /// Clients only receive it; the trusted server produces it.
    Consumed,
}

/// One classified difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub rule: &'static str,
    pub class: Class,
    /// The event (`call.offer`), or `spec` for requirement changes.
    pub subject: String,
    /// Where in the payload (`candidates[].sdp_mid`), empty for whole-event changes.
    pub path: String,
    pub message: String,
}

/// One version of the protocol: schema files by name, and the requirement export if present.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub schemas: BTreeMap<String, Value>,
    pub requirements: Option<Value>,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub old_version: u64,
    pub new_version: u64,
    pub changes: Vec<Change>,
}

impl Report {
    /// Breaking or unclassified changes without a protocol version bump fail the check.
    pub fn fails(&self) -> bool {
        self.new_version <= self.old_version
            && self.changes.iter().any(|c| c.class != Class::Compatible)
    }
}

/// What the schema says about one location in the payload.
#[derive(Debug, Clone, PartialEq, Default)]
struct Facts {
    required: bool,
    types: BTreeSet<String>,
    enum_values: Option<BTreeSet<String>>,
    constant: Option<Value>,
    pattern: Option<String>,
    limits: BTreeMap<&'static str, f64>,
    conditions: Option<Value>,
    forbidden: bool,
}

const LOWER_BOUNDS: [&str; 3] = ["minLength", "minimum", "minItems"];
const UPPER_BOUNDS: [&str; 3] = ["maxLength", "maximum", "maxItems"];

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut s = schema;
    // Follow local `#/$defs/X` references (bounded, in case of a cycle).
    for _ in 0..16 {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => match r
                .strip_prefix("#/$defs/")
                .and_then(|name| root["$defs"].get(name))
            {
                Some(target) => s = target,
                None => return s,
            },
            None => return s,
        }
    }
    s
}

/// `Option<T>` is generated as `anyOf: [T, {type: null}]` or `type: [T, "null"]`.
fn unwrap_nullable<'a>(root: &'a Value, schema: &'a Value) -> (&'a Value, bool) {
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && any.len() == 2
        && let Some(i) = any.iter().position(|s| s["type"] == "null")
    {
        return (resolve(root, &any[1 - i]), true);
    }
    (resolve(root, schema), false)
}

fn collect(
    root: &Value,
    schema: &Value,
    path: &str,
    required: bool,
    out: &mut BTreeMap<String, Facts>,
) {
    if schema == &Value::Bool(false) {
        out.insert(
            path.to_owned(),
            Facts {
                forbidden: true,
                ..Facts::default()
            },
        );
        return;
    }
    let (schema, nullable) = unwrap_nullable(root, schema);
    let mut facts = Facts {
        required,
        ..Facts::default()
    };
    match &schema["type"] {
        Value::String(t) => {
            facts.types.insert(t.clone());
        }
        Value::Array(ts) => facts
            .types
            .extend(ts.iter().filter_map(|t| t.as_str().map(str::to_owned))),
        _ => {}
    }
    if nullable {
        facts.types.insert("null".into());
    }
    if let Some(values) = schema["enum"].as_array() {
        facts.enum_values = Some(values.iter().map(ToString::to_string).collect());
    }
    facts.constant = schema.get("const").cloned();
    facts.pattern = schema["pattern"].as_str().map(str::to_owned);
    for key in LOWER_BOUNDS.iter().chain(UPPER_BOUNDS.iter()) {
        if let Some(v) = schema[*key].as_f64() {
            facts.limits.insert(key, v);
        }
    }
    let conditions: BTreeMap<&str, Value> =
        ["if", "then", "else", "anyOf", "oneOf", "allOf", "not"]
            .iter()
            .filter_map(|k| schema.get(*k).map(|v| (*k, v.clone())))
            .collect();
    if !conditions.is_empty() {
        facts.conditions = serde_json::to_value(conditions).ok();
    }
    let required_names: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.insert(path.to_owned(), facts);
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            collect(
                root,
                sub,
                &child,
                required_names.contains(name.as_str()),
                out,
            );
        }
    }
    if let Some(items) = schema.get("items") {
        collect(root, items, &format!("{path}[]"), true, out);
    }
}

/// The facts of every location of one event schema.
fn facts_of(schema: &Value) -> BTreeMap<String, Facts> {
    let mut out = BTreeMap::new();
    collect(schema, schema, "", true, &mut out);
    out
}

struct Rules {
    direction: Direction,
}

impl Rules {
    /// Class of a change that is breaking for both directions, or only when clients also send.
    fn both_only(&self) -> Class {
        match self.direction {
            Direction::Both => Class::Breaking,
            Direction::Consumed => Class::Compatible,
        }
    }
}

fn change(rule: &'static str, class: Class, subject: &str, path: &str, message: String) -> Change {
    Change {
        rule,
        class,
        subject: subject.to_owned(),
        path: path.to_owned(),
        message,
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(p, _)| p)
}

fn compare_event(
    subject: &str,
    direction: Direction,
    old: &Value,
    new: &Value,
    out: &mut Vec<Change>,
) {
    let rules = Rules { direction };
    let (old_f, new_f) = (facts_of(old), facts_of(new));
    let removed: Vec<&String> = old_f.keys().filter(|k| !new_f.contains_key(*k)).collect();
    let added: Vec<&String> = new_f.keys().filter(|k| !old_f.contains_key(*k)).collect();
    let mut renamed_from = BTreeSet::new();
    let mut renamed_to = BTreeSet::new();
    // A field that disappears while a field with identical facts appears beside it was renamed.
    for r in removed
        .iter()
        .filter(|r| !r.ends_with("[]") && !old_f[**r].forbidden)
    {
        if let Some(a) = added.iter().find(|a| {
            !renamed_to.contains(**a) && parent(a) == parent(r) && new_f[**a] == old_f[*r]
        }) {
            out.push(change(
                "COMPAT-FIELD-RENAMED",
                Class::Breaking,
                subject,
                r,
                format!("field `{r}` was renamed to `{a}`; receivers of either version miss it"),
            ));
            renamed_from.insert((*r).clone());
            renamed_to.insert((*a).clone());
        }
    }
    for r in removed {
        if renamed_from.contains(r) || (!parent(r).is_empty() && !new_f.contains_key(parent(r))) {
            continue;
        }
        let f = &old_f[r];
        if f.forbidden {
            out.push(change(
                "COMPAT-FIELD-UNFORBIDDEN",
                rules.both_only(),
                subject,
                r,
                format!("field `{r}` was forbidden and is now allowed"),
            ));
        } else if f.required {
            out.push(change(
                "COMPAT-FIELD-REMOVED-REQUIRED",
                Class::Breaking,
                subject,
                r,
                format!("required field `{r}` was removed; old receivers still require it"),
            ));
        } else {
            out.push(change(
                "COMPAT-FIELD-REMOVED-OPTIONAL",
                Class::Compatible,
                subject,
                r,
                format!("optional field `{r}` was removed"),
            ));
        }
    }
    for a in added {
        if renamed_to.contains(a) || (!parent(a).is_empty() && !old_f.contains_key(parent(a))) {
            continue;
        }
        let f = &new_f[a];
        if f.forbidden {
            out.push(change(
                "COMPAT-FIELD-FORBIDDEN",
                Class::Breaking,
                subject,
                a,
                format!("field `{a}` is now forbidden; old senders may send it"),
            ));
        } else if f.required {
            out.push(change(
                "COMPAT-FIELD-ADDED-REQUIRED",
                rules.both_only(),
                subject,
                a,
                format!("required field `{a}` was added; old senders do not send it"),
            ));
        } else {
            out.push(change(
                "COMPAT-FIELD-ADDED-OPTIONAL",
                Class::Compatible,
                subject,
                a,
                format!("optional field `{a}` was added"),
            ));
        }
    }
    for (path, o) in &old_f {
        let Some(n) = new_f.get(path) else { continue };
        if o.forbidden || n.forbidden {
            continue;
        }
        if !path.ends_with("[]") && !path.is_empty() {
            match (o.required, n.required) {
                (false, true) => out.push(change(
                    "COMPAT-FIELD-NOW-REQUIRED",
                    rules.both_only(),
                    subject,
                    path,
                    format!("field `{path}` became required; old senders may omit it"),
                )),
                (true, false) => out.push(change(
                    "COMPAT-FIELD-NOW-OPTIONAL",
                    Class::Breaking,
                    subject,
                    path,
                    format!("field `{path}` became optional; old receivers require it"),
                )),
                _ => {}
            }
        }
        let widened: Vec<&String> = n.types.difference(&o.types).collect();
        let narrowed: Vec<&String> = o.types.difference(&n.types).collect();
        if !widened.is_empty() && !o.types.is_empty() {
            out.push(change(
                "COMPAT-TYPE-WIDENED",
                Class::Breaking,
                subject,
                path,
                format!("`{path}` now also accepts {widened:?}; old receivers reject it"),
            ));
        }
        if !narrowed.is_empty() && !n.types.is_empty() {
            out.push(change(
                "COMPAT-TYPE-NARROWED",
                rules.both_only(),
                subject,
                path,
                format!("`{path}` no longer accepts {narrowed:?}; old senders may send it"),
            ));
        }
        match (&o.enum_values, &n.enum_values) {
            (Some(ov), Some(nv)) => {
                let gained: Vec<&String> = nv.difference(ov).collect();
                let lost: Vec<&String> = ov.difference(nv).collect();
                if !gained.is_empty() {
                    out.push(change(
                        "COMPAT-ENUM-VALUE-ADDED",
                        Class::Breaking,
                        subject,
                        path,
                        format!("`{path}` gained values {gained:?}; old receivers reject them"),
                    ));
                }
                if !lost.is_empty() {
                    out.push(change(
                        "COMPAT-ENUM-VALUE-REMOVED",
                        rules.both_only(),
                        subject,
                        path,
                        format!("`{path}` lost values {lost:?}; old senders may send them"),
                    ));
                }
            }
            (None, Some(_)) => out.push(change(
                "COMPAT-TYPE-NARROWED",
                rules.both_only(),
                subject,
                path,
                format!("`{path}` is now an enumeration"),
            )),
            (Some(_), None) => out.push(change(
                "COMPAT-TYPE-WIDENED",
                Class::Breaking,
                subject,
                path,
                format!("`{path}` is no longer an enumeration"),
            )),
            (None, None) => {}
        }
        if o.constant != n.constant {
            out.push(change(
                "COMPAT-CONST-CHANGED",
                Class::Breaking,
                subject,
                path,
                format!(
                    "the fixed value of `{path}` changed from {:?} to {:?}",
                    o.constant, n.constant
                ),
            ));
        }
        if o.pattern != n.pattern {
            out.push(change(
                "COMPAT-PATTERN-CHANGED",
                Class::Unclassified,
                subject,
                path,
                format!(
                    "the pattern of `{path}` changed from {:?} to {:?}",
                    o.pattern, n.pattern
                ),
            ));
        }
        for key in LOWER_BOUNDS.iter().chain(UPPER_BOUNDS.iter()) {
            let (ov, nv) = (o.limits.get(key), n.limits.get(key));
            if ov == nv {
                continue;
            }
            let lower = LOWER_BOUNDS.contains(key);
            // A bound that appears tightens; one that disappears loosens.
            let tightened = match (ov, nv) {
                (Some(a), Some(b)) => {
                    if lower {
                        b > a
                    } else {
                        b < a
                    }
                }
                (None, Some(_)) => true,
                _ => false,
            };
            if tightened {
                out.push(change(
                    "COMPAT-LIMIT-TIGHTENED",
                    rules.both_only(),
                    subject,
                    path,
                    format!(
                        "{key} of `{path}` went from {ov:?} to {nv:?}; old senders may exceed it"
                    ),
                ));
            } else {
                out.push(change("COMPAT-LIMIT-LOOSENED", Class::Breaking, subject, path, format!("{key} of `{path}` went from {ov:?} to {nv:?}; old receivers reject the new range")));
            }
        }
        if o.conditions != n.conditions {
            out.push(change(
                "COMPAT-CONDITION-CHANGED",
                Class::Unclassified,
                subject,
                path,
                format!(
                    "a conditional rule (if/then/else, anyOf, ...) at `{}` changed",
                    if path.is_empty() { "the event" } else { path }
                ),
            ));
        }
    }
}

fn requirement_map(v: &Value) -> BTreeMap<String, (String, String)> {
    v["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["id"].as_str()?.to_owned(),
                (
                    r["level"].as_str()?.to_owned(),
                    r["text"].as_str().unwrap_or("").to_owned(),
                ),
            ))
        })
        .collect()
}

fn rank(level: &str) -> u8 {
    match level {
        "must" => 2,
        "should" => 1,
        _ => 0,
    }
}

fn compare_requirements(old: &Value, new: &Value, out: &mut Vec<Change>) {
    let (o, n) = (requirement_map(old), requirement_map(new));
    for (id, (level, _)) in &o {
        if !n.contains_key(id) {
            let class = if level == "must" {
                Class::Breaking
            } else {
                Class::Compatible
            };
            out.push(change(
                "COMPAT-REQ-REMOVED",
                class,
                "spec",
                id,
                format!("requirement [{id}] ({level}) was removed; peers may rely on it"),
            ));
        }
    }
    for (id, (level, text)) in &n {
        match o.get(id) {
            None => {
                let class = if level == "must" {
                    Class::Unclassified
                } else {
                    Class::Compatible
                };
                out.push(change(
                    "COMPAT-REQ-ADDED",
                    class,
                    "spec",
                    id,
                    format!("requirement [{id}] ({level}) was added"),
                ));
            }
            Some((old_level, old_text)) => {
                if rank(level) < rank(old_level) {
                    out.push(change(
                        "COMPAT-REQ-WEAKENED",
                        Class::Breaking,
                        "spec",
                        id,
                        format!("[{id}] went from {old_level} to {level}; peers may rely on it"),
                    ));
                } else if rank(level) > rank(old_level) {
                    out.push(change("COMPAT-REQ-STRENGTHENED", Class::Unclassified, "spec", id, format!("[{id}] went from {old_level} to {level}; existing implementations may not conform")));
                } else if text != old_text {
                    out.push(change(
                        "COMPAT-REQ-REWORDED",
                        Class::Compatible,
                        "spec",
                        id,
                        format!("the text of [{id}] changed"),
                    ));
                }
            }
        }
    }
}

fn events_of(snapshot: &Snapshot) -> BTreeMap<String, (String, Direction)> {
    snapshot
        .schemas
        .get("index.json")
        .map_or_else(BTreeMap::new, |index| {
            index["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let direction = match e["direction"].as_str() {
                        Some("consumed") => Direction::Consumed,
                        _ => Direction::Both,
                    };
                    Some((
                        e["event"].as_str()?.to_owned(),
                        (e["schema"].as_str()?.to_owned(), direction),
                    ))
                })
                .collect()
        })
}

/// Compares two versions of the protocol.
pub fn compare(old: &Snapshot, new: &Snapshot) -> Report {
    let version = |s: &Snapshot| {
        s.schemas
            .get("index.json")
            .and_then(|i| i["protocol_version"].as_u64())
            .unwrap_or(0)
    };
    let (old_events, new_events) = (events_of(old), events_of(new));
    let mut changes = Vec::new();
    for (event, (file, _)) in &old_events {
        if !new_events.contains_key(event) {
            changes.push(change(
                "COMPAT-EVENT-REMOVED",
                Class::Breaking,
                event,
                "",
                format!("event {event} ({file}) was removed"),
            ));
        }
    }
    for (event, (new_file, direction)) in &new_events {
        let Some((old_file, old_direction)) = old_events.get(event) else {
            changes.push(change(
                "COMPAT-EVENT-ADDED",
                Class::Compatible,
                event,
                "",
                format!("event {event} was added; old receivers ignore it"),
            ));
            continue;
        };
        // The stricter direction of the two versions applies.
        let direction = if *direction == Direction::Both || *old_direction == Direction::Both {
            Direction::Both
        } else {
            Direction::Consumed
        };
        match (old.schemas.get(old_file), new.schemas.get(new_file)) {
            (Some(o), Some(n)) => compare_event(event, direction, o, n, &mut changes),
            _ => changes.push(change(
                "COMPAT-SCHEMA-MISSING",
                Class::Unclassified,
                event,
                "",
                format!("a schema file of {event} is missing"),
            )),
        }
    }
    for file in ["sealed.json"] {
        if let (Some(o), Some(n)) = (old.schemas.get(file), new.schemas.get(file)) {
            compare_event("sealed", Direction::Both, o, n, &mut changes);
        }
    }
    if let (Some(o), Some(n)) = (&old.requirements, &new.requirements) {
        compare_requirements(o, n, &mut changes);
    }
    changes.sort_by(|a, b| (&a.subject, &a.path, a.rule).cmp(&(&b.subject, &b.path, b.rule)));
    Report {
        old_version: version(old),
        new_version: version(new),
        changes,
    }
}

/// Plain text, one line per change.
pub fn to_text(report: &Report) -> String {
    let mut s = String::new();
    for c in &report.changes {
        let class = match c.class {
            Class::Breaking => "BREAKING",
            Class::Compatible => "ok",
            Class::Unclassified => "UNCLASSIFIED",
        };
        s.push_str(&format!(
            "{class:<12} {:<28} {} {}: {}\n",
            c.rule, c.subject, c.path, c.message
        ));
    }
    let count = |k| report.changes.iter().filter(|c| c.class == k).count();
    s.push_str(&format!(
        "schemas diff: {} breaking, {} unclassified, {} compatible (protocol version {} -> {}){}\n",
        count(Class::Breaking),
        count(Class::Unclassified),
        count(Class::Compatible),
        report.old_version,
        report.new_version,
        if report.fails() {
            "; FAILED: bump the protocol version or revert"
        } else {
            ""
        }
    ));
    s
}

/// GitHub Actions workflow commands: an error or notice annotation per change.
pub fn to_github(report: &Report) -> String {
    report
        .changes
        .iter()
        .map(|c| {
            let level = match c.class {
                Class::Compatible => "notice",
                _ if report.new_version > report.old_version => "warning",
                _ => "error",
            };
            let file = if c.subject == "spec" {
                "spec/requirements.json".to_owned()
            } else {
                format!("schemas/{}.json", c.subject)
            };
            format!(
                "::{level} file={file},title={}::{} {}: {}\n",
                c.rule, c.subject, c.path, c.message
            )
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per change, failing for breaking and unclassified ones (unless the
/// version was bumped).
pub fn to_junit(report: &Report) -> String {
    let failing =
        |c: &Change| c.class != Class::Compatible && report.new_version <= report.old_version;
    let failures = report.changes.iter().filter(|c| failing(c)).count();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"schemas diff\" tests=\"{}\" failures=\"{failures}\">\n  <testsuite name=\"protocol compatibility\" tests=\"{}\" failures=\"{failures}\">\n",
        report.changes.len().max(1),
        report.changes.len().max(1)
    );
    if report.changes.is_empty() {
        s.push_str("    <testcase classname=\"compatibility\" name=\"no changes\"/>\n");
    }
    for c in &report.changes {
        let name = xml_escape(&format!("{} {} {}", c.rule, c.subject, c.path));
        if failing(c) {
            s.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{name}\">\n      <failure message=\"{}\" type=\"{:?}\"/>\n    </testcase>\n",
                xml_escape(&c.subject),
                xml_escape(&c.message),
                c.class
            ));
        } else {
            s.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{name}\"/>\n",
                xml_escape(&c.subject)
            ));
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}
