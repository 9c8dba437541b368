//! Records the git commit of the build for `/version` (`<unknown>` outside a git checkout, e.g.
//! when building from the source tarball).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KES_BUILD_COMMIT");
    if let Ok(commit) = std::env::var("KES_BUILD_COMMIT") {
        println!("cargo:rustc-env=KES_BUILD_COMMIT={commit}");
        return;
    }
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| s.len() == 40)
        .unwrap_or_else(|| "<unknown>".into());
    println!("cargo:rustc-env=KES_BUILD_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
