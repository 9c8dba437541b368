//! Records the git commit of the build for `/version` (`<unknown>` outside a git checkout, e.g.
//! when building from the source tarball, unless KES_BUILD_COMMIT is set).
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KES_BUILD_COMMIT");
    if let Ok(commit) = std::env::var("KES_BUILD_COMMIT") {
        println!("cargo:rustc-env=KES_BUILD_COMMIT={commit}");
        return;
    }
    let commit = git(&["rev-parse", "HEAD"]).filter(|s| s.len() == 40);
    println!(
        "cargo:rustc-env=KES_BUILD_COMMIT={}",
        commit.as_deref().unwrap_or("<unknown>")
    );
    if commit.is_none() {
        return;
    }
    // Rebuild when the checked-out commit changes. Ask git where its files are (a worktree's
    // .git is a file), and name only files that exist: a missing one makes cargo rerun always.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
