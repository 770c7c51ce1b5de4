//! The launcher's processes seen from outside: alive or not, signalled as a group.

use tracing::warn;

/// Whether a process is alive (it may be a zombie child; `/proc` says so).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Signals the driver's whole process group: it leads its own (spark-submit becomes the JVM,
/// which may have children of its own).
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if let Err(e) = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal) {
        if e != nix::errno::Errno::ESRCH {
            warn!(pid, ?signal, error = %e, "cannot signal driver");
        }
    }
}
