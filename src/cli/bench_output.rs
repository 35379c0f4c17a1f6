//! How every benchmark hands over its result: JSON on standard output, and the same in a file
//! when asked (the `--json` flag). Shared by `bench` and `bench interop` so neither imports the
//! other.

use serde_json::Value;

use super::CliResult;

/// Prints a benchmark's result as JSON and writes it to `path` too, if given.
pub(super) fn emit(result: &Value, path: Option<&std::path::Path>) -> CliResult {
    let text = serde_json::to_string_pretty(result).map_err(|e| e.to_string())?;
    println!("{text}");
    if let Some(path) = path {
        std::fs::write(path, format!("{text}\n"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(true)
}
