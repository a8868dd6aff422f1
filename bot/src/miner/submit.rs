//! `karpa submit`: open the pull request that carries a bundle. The PR body holds
//! the bundle locator (URL and sha256 of the hosted file, and the bundle digest),
//! so the validator can fetch exactly what the hotkey signed. Submitting twice
//! finds the open PR instead of opening another.

use anyhow::{bail, Context, Result};
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use proof::bundle::{verify_dir, BundleManifest, MANIFEST};
use proof::locator::Locator;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The canonical recipe repository, owner/name.
    #[arg(long)]
    pub repo: String,
    /// The branch holding the patch, fork-owner:branch.
    #[arg(long)]
    pub head: String,
    #[arg(long, default_value = "main")]
    pub base: String,
    /// The bundle file made by `karpa bundle pack` (plain or sealed).
    #[arg(long)]
    pub bundle_file: PathBuf,
    /// Where the bundle file is hosted (https://…).
    #[arg(long)]
    pub bundle_url: String,
    #[arg(long, default_value = "https://api.github.com")]
    pub api_url: String,
    /// GitHub token (or set GITHUB_TOKEN).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug)]
pub struct Submitted {
    pub number: u64,
    pub url: String,
    /// The PR was already open for this branch.
    pub existing: bool,
}

/// What the PR says, built from the bundle file (which is checked first).
pub fn pr_text(bundle_file: &Path, bundle_url: &str) -> Result<(String, String)> {
    let dir = tempfile::tempdir()?;
    let file = std::fs::File::open(bundle_file).with_context(|| format!("cannot read {}", bundle_file.display()))?;
    crate::archive::unpack(std::io::BufReader::new(file), dir.path(), &[]).with_context(|| {
        format!("{} is not a bundle file (make one with `karpa bundle pack`)", bundle_file.display())
    })?;
    let manifest: BundleManifest = serde_json::from_slice(&std::fs::read(dir.path().join(MANIFEST))?)
        .with_context(|| format!("{} has no readable manifest", bundle_file.display()))?;
    let sealed = dir.path().join(super::seal::SEALED_PAYLOAD).exists();
    let rationale = if sealed {
        "The bundle is sealed to the validator until the verdict.".to_string()
    } else {
        let (_, findings) = verify_dir(dir.path());
        if !findings.is_empty() {
            bail!("the bundle does not verify ({} findings): run `karpa bundle verify` on it", findings.len());
        }
        std::fs::read_to_string(dir.path().join("rationale.md"))?
    };
    let locator = Locator {
        url: bundle_url.to_string(),
        sha256: proof::sha256_file(bundle_file)?,
        bundle_digest: manifest.digest(),
    };
    let body = format!(
        "## Karpa submission\n\n| | |\n|---|---|\n| config | `{}` |\n| king | `{}` (`{}`) |\n| hotkey | `{}` |\n| bundle digest | `{}` |\n\n### Rationale\n\n{}\n\n{}",
        manifest.config,
        manifest.king_tag,
        manifest.king_commit,
        manifest.miner_hotkey,
        locator.bundle_digest,
        rationale.trim(),
        locator.render()
    );
    // Validate what we wrote the way the validator will read it.
    Locator::parse_from_body(&body)?;
    let headline =
        rationale.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or("a recipe patch").trim();
    let title: String = format!("[karpa] {}: {headline}", manifest.config).chars().take(72).collect();
    Ok((title, body))
}

pub async fn submit(args: &SubmitArgs) -> Result<Submitted> {
    let Some((owner, name)) = args.repo.split_once('/') else {
        bail!("--repo must be owner/name, got {:?}", args.repo);
    };
    if !args.head.contains(':') {
        bail!("--head must be fork-owner:branch, got {:?}", args.head);
    }
    let (title, body) = pr_text(&args.bundle_file, &args.bundle_url)?;
    // Opening a PR is not idempotent: no automatic retries, we check first ourselves.
    let gh = Octocrab::builder()
        .personal_token(args.token.clone())
        .base_uri(args.api_url.as_str())?
        .add_retry_config(RetryConfig::None)
        .build()?;
    let pulls = gh.pulls(owner, name);
    let open = pulls.list().head(args.head.clone()).state(octocrab::params::State::Open).send().await?;
    if let Some(pr) = open.items.into_iter().next() {
        return Ok(Submitted {
            number: pr.number,
            url: pr.html_url.map(|u| u.to_string()).unwrap_or(pr.url),
            existing: true,
        });
    }
    let pr = pulls.create(title, args.head.clone(), args.base.clone()).body(body).send().await?;
    Ok(Submitted { number: pr.number, url: pr.html_url.map(|u| u.to_string()).unwrap_or(pr.url), existing: false })
}
