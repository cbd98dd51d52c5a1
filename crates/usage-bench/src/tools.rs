//! What the command needs besides itself: the `wrk` load generator and the gateway binary built
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

/// Returns whether `path` runs as `wrk` (it prints its version and usage, then exits 1).
fn wrk_version(path: &Path) -> Option<String> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("wrk "))
        .map(|l| l.split(" [").next().unwrap_or(l).trim().to_owned())
}

/// Finds `wrk` on `PATH`, installing Debian's package (`apt-get install -y wrk`) when it is
/// missing and apt is there; otherwise says how to install it.
pub fn ensure_wrk() -> Result<PathBuf, String> {
    let wrk = PathBuf::from("wrk");
    if let Some(v) = wrk_version(&wrk) {
        println!("load generator: {v}");
        return Ok(wrk);
    }
    apt_install("wrk", "wrk is not installed")?;
    wrk_version(&wrk)
        .map(|v| {
            println!("load generator: {v}");
            wrk
        })
        .ok_or_else(|| "`apt-get install wrk` succeeded but `wrk` does not run".into())
}

/// Returns nginx's version line when `path` runs as nginx (`nginx -v` prints it on stderr).
fn nginx_version(path: &Path) -> Option<String> {
    let out = Command::new(path)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("nginx version: "))
        .map(str::to_owned)
}

/// Finds `nginx` (on `PATH`, or `/usr/sbin/nginx`, where Debian puts it and where an ordinary
/// user's `PATH` may not look), installing Debian's package (`apt-get install -y nginx`) when it
/// is missing and apt is there; otherwise says how to install it. The benchmark runs its own
/// nginx on a config of its own (see `nginx.rs`) and never the system's service.
pub fn ensure_nginx() -> Result<PathBuf, String> {
    let find = || {
        ["nginx", "/usr/sbin/nginx"].into_iter().find_map(|p| {
            let p = PathBuf::from(p);
            nginx_version(&p).map(|v| {
                println!("reference server: {v} ({})", p.display());
                p
            })
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    apt_install("nginx", "nginx is not installed")?;
    find().ok_or_else(|| "`apt-get install nginx` succeeded but `nginx` does not run".into())
}

/// Installs a Debian package with `apt-get install -y` (after `apt-get update` when the first
/// try fails); says how to install it elsewhere.
fn apt_install(package: &str, why: &str) -> Result<(), String> {
    let has_apt = Command::new("apt-get")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_apt {
        return Err(format!(
            "{why} and apt-get is not available: install {package} \
             (e.g. `brew install {package}`, `dnf install {package}`) and run again"
        ));
    }
    println!("{why}; installing Debian's package");
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y", "-q", package]);
        run(cmd)
    };
    if install().is_err() {
        let mut update = Command::new("apt-get");
        update.args(["update", "-q"]);
        run(update)?;
        install()?;
    }
    Ok(())
}

/// The arguments of the gateway's build.
const BUILD_ARGS: [&str; 10] = [
    "build",
    "--release",
    "-p",
    "usage-gateway",
    "-p",
    "usage-bench",
    "--bin",
    "usage-gateway",
    "--bin",
    "usage-bench",
];

/// Builds `usage-gateway` in release mode and returns the binary's path.
///
/// The benchmark's own package is named too, so that cargo resolves features for both together,
/// as it did when `cargo run -p usage-bench` built the benchmark (which depends on the gateway's
/// library): every dependency is then already built and only the gateway binary is linked.
/// Built alone, the gateway's dependencies resolved differently and some 50 crates were
/// compiled a second time (4 min 58 s of a 9 min 10 s fresh-clone run).
pub fn build_gateway(root: &Path) -> Result<PathBuf, String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(BUILD_ARGS);
    // `cargo run` gives the benchmark its package's variables; `ring`'s build script reruns
    // when `CARGO_MANIFEST_DIR` changes, and with it the TLS stack and every workspace crate.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_cargo_run_var) {
            cmd.env_remove(name);
        }
    }
    run(cmd)?;
    let bin = target_dir(root).join("release").join("usage-gateway");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("the build did not produce {}", bin.display()))
    }
}

/// Whether `cargo run` sets `name` for the program it runs (the package's variables, not the
/// user's cargo settings such as `CARGO_HOME` or `CARGO_TARGET_DIR`).
fn is_cargo_run_var(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
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
        c.args(BUILD_ARGS);
        assert_eq!(
            show(&c),
            "cargo build --release -p usage-gateway -p usage-bench --bin usage-gateway --bin \
             usage-bench"
        );
    }

    #[test]
    fn only_the_package_variables_of_cargo_run_are_dropped() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
        ] {
            assert!(is_cargo_run_var(name), "{name}");
        }
        for name in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO",
            "CARGO_PROFILE_RELEASE_DEBUG",
        ] {
            assert!(!is_cargo_run_var(name), "{name}");
        }
    }

    #[test]
    fn a_failing_command_is_an_error() {
        assert!(run(Command::new("false")).is_err());
        assert!(run(Command::new("true")).is_ok());
        assert!(wrk_version(Path::new("/nonexistent/wrk")).is_none());
        assert!(nginx_version(Path::new("/nonexistent/nginx")).is_none());
        // `true -v` prints nothing: not nginx.
        assert!(nginx_version(Path::new("true")).is_none());
    }
}
