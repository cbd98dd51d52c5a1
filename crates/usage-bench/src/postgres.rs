//! The throw-away PostgreSQL cluster of scenarios 6 and 7, started and stopped with the
//! repository's own `.ci/postgres.sh` (the one the usage-store tests use): a fresh cluster under
//! `target/pg` on a free port of 127.0.0.1, Debian's `postgresql` installed when `initdb` is
//! missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running cluster (stopped when dropped).
#[derive(Debug)]
pub struct Postgres {
    root: PathBuf,
    /// `postgres://postgres:…@127.0.0.1:PORT/usage_store_test`, the script's database.
    url: String,
    psql: PathBuf,
}

impl Postgres {
    /// Sources `.ci/postgres.sh` in `root` and runs its `pg_start` (blocking; seconds, or a
    /// minute when it installs the package).
    pub fn start(root: &Path) -> Result<Self, String> {
        println!("$ . .ci/postgres.sh; pg_start");
        let out = Command::new("bash")
            .arg("-c")
            .arg(
                r#"set -e; . .ci/postgres.sh; pg_start; printf 'BENCH_PG_URL=%s\nBENCH_PG_BIN=%s\n' "$USAGE_GATEWAY_TEST_DATABASE_URL" "$PG_CI_BIN""#,
            )
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run bash .ci/postgres.sh: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::to_owned)
        };
        let (Some(url), Some(bin)) = (value("BENCH_PG_URL="), value("BENCH_PG_BIN=")) else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr.lines().chain(stdout.lines()).last().unwrap_or("");
            return Err(format!(
                ".ci/postgres.sh could not start a cluster ({}): {why}",
                out.status
            ));
        };
        // The script's line naming the version, address and start-up time.
        if let Some(banner) = stdout.lines().find(|l| l.starts_with("PostgreSQL ")) {
            println!("  {banner}");
        }
        Ok(Self {
            root: root.to_path_buf(),
            url,
            psql: Path::new(&bin).join("psql"),
        })
    }

    /// Creates the database `name` and returns its URL.
    pub fn database(&self, name: &str) -> Result<String, String> {
        self.query(&self.url, &format!("CREATE DATABASE {name}"))?;
        let (server, _) = self
            .url
            .rsplit_once('/')
            .ok_or("the script's URL has no database")?;
        Ok(format!("{server}/{name}"))
    }

    /// Runs one statement on the database at `url` with `psql`; returns its unaligned output.
    pub fn query(&self, url: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(&self.psql)
            .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align"])
            .args(["-v", "ON_ERROR_STOP=1", "--dbname"])
            .arg(url)
            .arg("--command")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.psql.display()))?;
        if !out.status.success() {
            return Err(format!(
                "psql `{sql}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Bytes of every table of the database at `url`, indexes and TOAST included
    /// (`pg_total_relation_size`).
    pub fn tables_bytes(&self, url: &str) -> Result<u64, String> {
        let text = self.query(
            url,
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r'",
        )?;
        text.parse()
            .map_err(|e| format!("pg_total_relation_size answered {text:?}: {e}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        println!("$ bash .ci/postgres.sh stop");
        let stopped = Command::new("bash")
            .args([".ci/postgres.sh", "stop"])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            eprintln!(
                "`bash .ci/postgres.sh stop` failed: the cluster under target/pg may still run"
            );
        }
    }
}
