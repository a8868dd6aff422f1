//! A throwaway PostgreSQL cluster for the tests and the demo: initdb into a
//! fresh folder, trust auth on loopback, a free port, fsync off; stopped and
//! removed on drop. PostgreSQL refuses to run as root, so as root it runs as the
//! `postgres` user the Debian package creates.

use crate::setup::postgres_bindir;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl Cluster {
    pub fn start() -> Result<Cluster> {
        let bindir = postgres_bindir().context("PostgreSQL server binaries not found (cargo xtask setup)")?;
        let as_postgres = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = std::env::temp_dir().join(format!("karpa-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if as_postgres {
            crate::run(Command::new("chown").args(["postgres:postgres"]).arg(&dir))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = Cluster { dir, bindir, as_postgres, port };
        let data = cluster.dir.join("data");
        cluster.pg("initdb", &["--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8", "-D"], &data)?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            cluster.dir.display()
        );
        let log = cluster.dir.join("server.log");
        cluster.pg("pg_ctl", &["-w", "-t", "60", "-o", &opts, "-l", &log.to_string_lossy(), "start", "-D"], &data)?;
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg(&self, tool: &str, args: &[&str], data: &Path) -> Result<()> {
        let bin = self.bindir.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let out = cmd.args(args).arg(data).output().with_context(|| format!("cannot start {tool}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            bail!(
                "{tool} failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg("pg_ctl", &["-w", "-m", "immediate", "stop", "-D"], &self.dir.join("data"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
