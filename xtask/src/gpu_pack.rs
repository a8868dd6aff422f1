//! `cargo xtask gpu-pack`: everything the GPU check needs, in `.gpu/`, small
//! enough to carry to a CUDA host that has torch 2.11.0 in Python but no Rust
//! and no network: the release `karpa-train` built here, and the demo corpus
//! prepared for `proxy` and `karpa-1` (cut into ~2 KB documents so their 0.5 %
//! val and hidden splits are not empty; unpinned, since throughput does not
//! depend on the text) and, as tiny pins it, for `tiny` (to try the check on a
//! CPU first).
//! `bench/gpu_check.sh .gpu` then prints tokens/s and MFU per config.

use crate::setup;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Each config and whether it takes the corpus as its pin expects (whole works)
/// or cut into documents.
const CONFIGS: [(&str, bool); 3] = [("tiny", false), ("proxy", true), ("karpa-1", true)];
/// Documents are cut at the first paragraph break after this many bytes.
const DOC_BYTES: usize = 2000;

pub fn run(root: &Path) -> Result<()> {
    let env = setup::ensure_all(root)?;
    crate::cargo(&["build", "--release", "--bin", "karpa-train"], &env)?;
    let pack = root.join(".gpu");
    let _ = std::fs::remove_dir_all(&pack);
    let cut = pack.join("corpus");
    std::fs::create_dir_all(&cut)?;
    let docs = cut_corpus(&env.corpus, &cut.join("shakespeare.jsonl"))?;
    let bin = pack.join("karpa-train");
    std::fs::copy(root.join("target/release/karpa-train"), &bin)?;
    for (config, cut_up) in CONFIGS {
        crate::run(
            Command::new(&bin)
                .args(["prepare", "--config", config, "--input"])
                .arg(if cut_up { &cut } else { &env.corpus })
                .arg("--salt-file")
                .arg(&env.salt_file)
                .arg("--out")
                .arg(pack.join("data").join(config))
                .stdout(std::process::Stdio::null()),
        )?;
    }
    std::fs::remove_dir_all(&cut)?;
    eprintln!("xtask: {} holds karpa-train, tiny's data and {docs} documents for proxy and karpa-1", pack.display());
    eprintln!("xtask: on the CUDA host: bash bench/gpu_check.sh .gpu   (a dry run here: DEVICE=cpu CONFIGS=tiny:20 PYTHON=.venv/bin/python …)");
    Ok(())
}

/// The corpus's files as JSONL documents of about `DOC_BYTES` each; returns how many.
fn cut_corpus(corpus: &Path, out: &Path) -> Result<usize> {
    let mut files: Vec<_> = std::fs::read_dir(corpus)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut docs = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        let mut doc = String::new();
        for para in text.split("\n\n") {
            doc.push_str(para);
            doc.push_str("\n\n");
            if doc.len() >= DOC_BYTES {
                writeln!(w, "{}", serde_json::json!({ "text": doc }))?;
                docs += 1;
                doc.clear();
            }
        }
        if !doc.trim().is_empty() {
            writeln!(w, "{}", serde_json::json!({ "text": doc }))?;
            docs += 1;
        }
    }
    w.flush()?;
    Ok(docs)
}
