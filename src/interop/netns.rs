//! Keeping a browser's WebRTC traffic on loopback. Chromium gathers ICE candidates on every
//! interface of the machine and sends connectivity checks from all of them, even when the page
//! signals only its loopback candidates. In a network namespace made by `unshare --net`, loopback
//! is the only interface, so no packet can go anywhere else.

use std::ffi::OsString;
use std::process::{Command, ExitStatus};

/// Whether this process's network namespace has no interface but `lo`.
pub fn only_loopback() -> bool {
    std::fs::read_to_string("/proc/net/dev").is_ok_and(|dev| {
        dev.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .all(|name| name.trim() == "lo")
    })
}

fn found(program: &str, version_flag: &str) -> bool {
    Command::new(program)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why a loopback-only namespace cannot be made here, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    (!found("unshare", "--version") || !found("ip", "-V")).then_some(
        "a network namespace with only loopback needs `unshare` (util-linux) and `ip` (iproute2)",
    )
}

/// The command that runs this executable again with `args` in a new network namespace (and user
/// namespace, so no privileges are needed) where only loopback is up.
pub fn self_isolated(args: &[OsString]) -> Result<Command, crate::error::ToolError> {
    if let Some(why) = unavailable() {
        return Err(why.into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new("unshare");
    command
        .args(["--net", "--map-root-user", "--", "sh", "-c"])
        .arg("ip link set lo up && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(args);
    Ok(command)
}

/// [`self_isolated`], run to the end with its output inherited.
pub fn run_self_isolated(args: &[OsString]) -> Result<ExitStatus, crate::error::ToolError> {
    self_isolated(args)?
        .status()
        .map_err(|e| format!("unshare: {e}").into())
}
