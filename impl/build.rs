//! Records the git commit this crate is built from as `CAMPUS_GIT_COMMIT`, for the
//! `campus_build_info` metric. Without git (a source tarball) the metric says `unknown`;
//! a packager may set `CAMPUS_GIT_COMMIT` itself.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=CAMPUS_GIT_COMMIT");
    if std::env::var_os("CAMPUS_GIT_COMMIT").is_some() {
        return;
    }
    // Rebuilt when HEAD moves: the HEAD file (a branch switch) and the branch's ref.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    // A missing file (a packed ref) would make cargo rerun this on every build.
    .filter(|p| std::path::Path::new(p).exists())
    {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=CAMPUS_GIT_COMMIT={commit}");
    }
}
