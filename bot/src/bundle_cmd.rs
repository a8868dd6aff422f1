//! `karpa bundle …`: the miner's and the validator's view of a proof bundle.

use anyhow::{bail, Context, Result};
use proof::bundle::{verify_dir, Finding};
use std::path::Path;

/// Verifies a bundle folder, or a bundle file made by `karpa bundle pack`, offline;
/// Ok(true) when every check holds.
pub fn verify(path: &Path, json: bool) -> Result<bool> {
    let unpacked;
    let dir = if path.is_dir() {
        path
    } else if path.is_file() {
        unpacked = tempfile::tempdir()?;
        let file = std::fs::File::open(path)?;
        crate::archive::unpack(std::io::BufReader::new(file), unpacked.path(), &[])
            .with_context(|| format!("{} is not a bundle file", path.display()))?;
        unpacked.path()
    } else {
        bail!("{} is not a bundle folder or file", path.display());
    };
    if dir.join(crate::miner::seal::SEALED_PAYLOAD).exists() {
        bail!("{} is sealed: open it with `karpa bundle open` and the validator's identity first", path.display());
    }
    let (manifest, findings) = verify_dir(dir);
    if json {
        let digest = manifest.as_ref().map(|m| m.digest().to_string());
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"bundle_digest": digest, "findings": findings}))?
        );
    } else {
        if let Some(m) = &manifest {
            println!("bundle {}  config {}  king {}  miner {}", m.digest(), m.config, m.king_tag, m.github_login);
        }
        print_table(&findings);
    }
    Ok(findings.is_empty())
}

fn print_table(findings: &[Finding]) {
    if findings.is_empty() {
        println!("ok: manifest, file digests, attestation and hotkey signature all hold");
        return;
    }
    println!("{:<22} {:<36} message", "code", "file");
    for f in findings {
        println!("{:<22} {:<36} {}", f.code, f.file.as_deref().unwrap_or("-"), f.message);
    }
}
