//! What the command needs besides itself: the `oha` load generator and the gateway binary built
//! in release mode. Every command it runs is printed first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Returns the workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// Returns the cargo target directory (`CARGO_TARGET_DIR`, else `<root>/target`).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| root.join("target"), |p| root.join(p))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with inherited output after printing it; fails on a non-zero exit.
fn run(mut cmd: Command) -> Result<(), String> {
    let line = show(&cmd);
    println!("$ {line}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

/// Returns the `oha` version line when `path` runs.
fn oha_version(path: &Path) -> Option<String> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Finds `oha` on `PATH` or in cargo's bin directory, installing it with
/// `cargo install oha --locked` when it is missing.
pub fn ensure_oha() -> Result<PathBuf, String> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin").join("oha"));
    let candidates: Vec<PathBuf> = std::iter::once(PathBuf::from("oha"))
        .chain(cargo_bin.clone())
        .collect();
    for c in &candidates {
        if let Some(v) = oha_version(c) {
            println!("load generator: {v} ({})", c.display());
            return Ok(c.clone());
        }
    }
    println!("oha is not installed; installing it (takes a few minutes the first time)");
    let mut cmd = Command::new(cargo());
    cmd.args(["install", "oha", "--locked"]);
    run(cmd)?;
    for c in &candidates {
        if let Some(v) = oha_version(c) {
            println!("load generator: {v} ({})", c.display());
            return Ok(c.clone());
        }
    }
    Err(
        "`cargo install oha --locked` succeeded but oha is neither on PATH nor in $CARGO_HOME/bin"
            .into(),
    )
}

/// Builds `usage-gateway` in release mode and returns the binary's path.
pub fn build_gateway(root: &Path) -> Result<PathBuf, String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args([
        "build",
        "--release",
        "-p",
        "usage-gateway",
        "--bin",
        "usage-gateway",
    ]);
    run(cmd)?;
    let bin = target_dir(root).join("release").join("usage-gateway");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("the build did not produce {}", bin.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_workspace() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("crates").join("usage-bench").is_dir());
    }

    #[test]
    fn prints_commands_as_typed() {
        let mut c = Command::new("cargo");
        c.args(["install", "oha", "--locked"]);
        assert_eq!(show(&c), "cargo install oha --locked");
    }

    #[test]
    fn a_failing_command_is_an_error() {
        assert!(run(Command::new("false")).is_err());
        assert!(run(Command::new("true")).is_ok());
        assert!(oha_version(Path::new("/nonexistent/oha")).is_none());
    }
}
