//! The few system calls that need `unsafe`: locking memory and disabling core dumps.
//!
//! Keys live in process memory. `mlockall` keeps every page (current and future) out of swap, and a
//! core-dump limit of zero keeps them out of crash dumps. Both are best-effort: the server reports
//! what it got and runs either way. Nothing else in the crate uses `unsafe`.
#![allow(unsafe_code)]

use std::io;

/// Locks all current and future pages of the process in memory (Linux `mlockall`).
#[cfg(target_os = "linux")]
pub fn lock_memory() -> io::Result<()> {
    // SAFETY: mlockall takes flags only, touches no Rust-managed memory and cannot violate memory
    // safety; failure is reported through errno.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lock_memory() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "mlockall is only supported on Linux",
    ))
}

/// Sets the core-dump size limit of this process to zero and marks it non-dumpable, so that a crash
/// never writes key material to disk.
#[cfg(unix)]
pub fn disable_core_dumps() -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the rlimit struct we pass by reference for the duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn disable_core_dumps() -> io::Result<()> {
    Ok(())
}
