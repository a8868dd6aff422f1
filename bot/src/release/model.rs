//! `karpa model export` and `karpa model verify`: a release as a model folder.
//!
//! The folder holds the weights (`model.safetensors`, no optimizer state), the
//! tokenizer, the data manifest it belongs to (so `karpa-train generate --data
//! <folder>` finds the tokenizer), `config.json` and a model card. Every number in
//! `config.json` is derived from the clone alone: the tag's tree, its crown note
//! (which embeds the bundle's manifest, attestation and final state, and the
//! weights' digest) and the notes of the releases before it. So verifying is
//! deriving again and comparing, with no bundle and no network.
//!
//! A folder's weights are either the crowned bundle's scored checkpoint
//! (`export`) or a re-training of the tag (`karpa reference`, `reference.rs`):
//! `config.json`'s `provenance` says which. The record's numbers (the crown's
//! scores, the lineage, the digests) are derived the same way for both; a
//! re-training's own numbers (its run, its scores) are the exporter's, which the
//! card says, and `karpa reproduce` re-makes.

use super::card;
use super::weights::{self, WeightsDigest};
use crate::lineage::note::{self, CrownNote};
use crate::repo::{King, RecipeRepo};
use anyhow::{bail, Context, Result};
use base64::Engine;
use proof::state::FinalState;
use proof::Sha256Hex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MODEL_FORMAT: &str = "karpa-model/v1";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const CARD_FILE: &str = "README.md";
/// The data manifest and tokenizer, under the names `karpa-train` looks for.
const DATA_MANIFEST_FILE: &str = "manifest.json";
const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// Write a release's model folder: weights, tokenizer, config.json and a model card.
    Export {
        /// A clone of the recipe repository with refs/notes/karpa fetched.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The release (default: the newest).
        #[arg(long)]
        tag: Option<String>,
        /// The release's bundle, folder or packed file (its checkpoint holds the weights).
        #[arg(long)]
        bundle: PathBuf,
        /// The config's prepared public data (its tokenizer goes into the folder).
        #[arg(long)]
        data: PathBuf,
        /// The model folder to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-check a model folder's weights and numbers against the crown notes,
    /// offline. Exit 1 when anything differs.
    Verify {
        folder: PathBuf,
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
    /// Verify a model folder, then list it on the corpus's Models page.
    Publish {
        folder: PathBuf,
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        #[arg(long, env = "KARPA_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The recipe repository on GitHub, owner/name.
        #[arg(long)]
        repo_name: String,
        /// Where the folder can be downloaded (https://…).
        #[arg(long)]
        url: Option<String>,
    },
}

/// `config.json`: what the model is and where each number comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub format: String,
    pub name: String,
    pub tag: String,
    pub commit: String,
    /// The protocol config it was trained on, and sha256 of its file at the tag.
    pub config: String,
    pub protocol_config_sha256: Sha256Hex,
    /// The recipe's hyperparameters for the config (its `recipe.toml` table).
    pub hparams: serde_json::Value,
    pub vocab_size: u32,
    pub seq_len: i64,
    pub params: u64,
    pub harness_digest: Sha256Hex,
    /// Where the config's text comes from (its `data.source`).
    pub dataset: String,
    pub data_manifest_sha256: Sha256Hex,
    pub tokenizer_sha256: String,
    pub bundle_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_url: Option<String>,
    /// sha256 of the crown note this was derived from.
    pub crown_note_sha256: Sha256Hex,
    pub weights: WeightsDigest,
    pub scores: Scores,
    pub training: Training,
    /// Every release up to this one, oldest first.
    pub lineage: Vec<Release>,
    /// The validators whose signatures the crown note carries.
    pub signed_by: Vec<String>,
    /// Whose run the weights are (the crowned bundle's when absent).
    #[serde(default)]
    pub provenance: Provenance,
}

/// Where a folder's weights come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Provenance {
    /// The crowned bundle's scored checkpoint: the miner's run the validator judged.
    #[default]
    Bundle,
    /// The tag re-trained on a reference config with the config's seed by `karpa
    /// reference`: the recipe's code and hyperparameters, the trainer's own run.
    /// Its numbers are that run's; `training` describes it.
    Reference {
        /// Public val bpb at the end of this run.
        val_bpb: f64,
        /// This run's last checkpoint scored on a hidden split, when one was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden_bpb: Option<f64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scores {
    /// The validator's hidden bpb of the bundle's checkpoint (these weights).
    pub hidden_bpb: f64,
    /// The king's noise floor at the crown.
    pub sigma: f64,
    pub floor_n: u64,
    pub king: String,
    pub king_bpb: f64,
    pub gain: f64,
    /// The validator's own runs of the recipe with its seeds (hidden bpb).
    pub confirmation_bpb: Vec<f64>,
    /// Public val bpb at the end of the bundle's training.
    pub val_bpb: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub seed: u64,
    pub steps: u64,
    pub tokens: u64,
    /// 6 · params · tokens.
    pub flops: f64,
    pub elapsed_s: f64,
    pub device: String,
    /// From the run's calibration (the bundle's attestation); None when the run
    /// was not calibrated.
    pub h100_equivalence: Option<f64>,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_bpb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gain: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_digest: Option<String>,
}

pub fn run(command: ModelCommand) -> Result<bool> {
    match command {
        ModelCommand::Export { repo, tag, bundle, data, out } => {
            let cfg = export(&repo, tag.as_deref(), &bundle, &data, &out)?;
            println!(
                "{}: {} ({} parameters), hidden bpb {:.4}",
                out.display(),
                cfg.name,
                cfg.params,
                cfg.scores.hidden_bpb
            );
            Ok(true)
        }
        ModelCommand::Verify { folder, repo } => {
            let problems = verify(&folder, &repo)?;
            for p in &problems {
                println!("✗ {p}");
            }
            if problems.is_empty() {
                println!("{}: the weights and every number match the crown notes", folder.display());
            }
            Ok(problems.is_empty())
        }
        ModelCommand::Publish { folder, repo, database_url, repo_name, url } => {
            let problems = verify(&folder, &repo)?;
            if !problems.is_empty() {
                bail!("{} does not verify, so it is not published:\n{}", folder.display(), problems.join("\n"));
            }
            if let Some(u) = url.as_deref().filter(|u| !u.starts_with("https://") && !u.starts_with("http://")) {
                bail!("--url {u:?} is not an http(s) link");
            }
            let cfg: ModelConfig = serde_json::from_slice(&read(&folder.join(CONFIG_FILE))?)?;
            let card = std::fs::read_to_string(folder.join(CARD_FILE))?;
            let id = tokio::runtime::Runtime::new()?.block_on(async {
                let pool = crate::db::connect(&database_url).await?;
                crate::corpus::record::publish_model(&pool, &repo_name, &cfg, &card, url.as_deref()).await
            })?;
            println!("published {} as model {id}", cfg.name);
            Ok(true)
        }
    }
}

/// Writes the model folder of `tag` (the newest release when None) to `out`.
pub fn export(repo_path: &Path, tag: Option<&str>, bundle: &Path, data: &Path, out: &Path) -> Result<ModelConfig> {
    if out.exists() {
        bail!("{} already exists: export writes a new folder", out.display());
    }
    let repo = RecipeRepo::open(repo_path)?;
    let king = repo.king(tag)?;
    let note = crowned(&repo, &king)?;
    let final_state = final_state_of(&note)?;
    let weights = weights::of_bundle(bundle, &final_state)?;
    if note.weights.as_ref() != Some(&weights.digest) {
        bail!(
            "{}'s scored checkpoint is not the one {}'s crown note names: another bundle?",
            bundle.display(),
            king.tag
        );
    }
    let cfg = derive(&repo, &king, &note, of_bundle(&note)?)?;
    write_folder(out, &weights.bytes, data, &cfg)?;
    Ok(cfg)
}

/// The model folder at `out`, written whole or not at all: the weights, the
/// data folder's tokenizer and manifest (which must be the ones `cfg` names),
/// config.json and the card.
pub(super) fn write_folder(out: &Path, weights: &[u8], data: &Path, cfg: &ModelConfig) -> Result<()> {
    let manifest_bytes = read(&data.join(DATA_MANIFEST_FILE))?;
    let tokenizer_bytes = read(&data.join(TOKENIZER_FILE))?;
    if let Some(why) = check_data(cfg, &proof::sha256_bytes(&manifest_bytes), &tokenizer_bytes).first() {
        bail!("{}: {why}", data.display());
    }
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    std::fs::write(partial.join(WEIGHTS_FILE), weights)?;
    std::fs::write(partial.join(TOKENIZER_FILE), &tokenizer_bytes)?;
    std::fs::write(partial.join(DATA_MANIFEST_FILE), &manifest_bytes)?;
    std::fs::write(partial.join(CONFIG_FILE), serde_json::to_string_pretty(cfg)? + "\n")?;
    std::fs::write(partial.join(CARD_FILE), card::render(cfg))?;
    std::fs::rename(&partial, out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(())
}

/// What differs between `folder` and what the clone's crown notes say it must be.
pub fn verify(folder: &Path, repo_path: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let claimed: ModelConfig = serde_json::from_slice(&read(&folder.join(CONFIG_FILE))?)
        .with_context(|| format!("{} is not a model config", folder.join(CONFIG_FILE).display()))?;
    let repo = RecipeRepo::open(repo_path)?;
    let king = repo.king(Some(&claimed.tag))?;
    let note = crowned(&repo, &king)?;
    let trained = match claimed.provenance {
        Provenance::Bundle => of_bundle(&note)?,
        // A re-training's run is the exporter's: the record checks the rest.
        Provenance::Reference { .. } => Trained::claimed_by(&claimed),
    };
    let expected = derive(&repo, &king, &note, trained)?;
    let manifest_sha = proof::sha256_file(&folder.join(DATA_MANIFEST_FILE))?;
    problems.extend(check_data(&expected, &manifest_sha, &read(&folder.join(TOKENIZER_FILE))?));
    let weights_sha = proof::sha256_file(&folder.join(WEIGHTS_FILE))?;
    if weights_sha != expected.weights.sha256 {
        let source = match claimed.provenance {
            Provenance::Bundle => format!("{}'s crown note names", king.tag),
            Provenance::Reference { .. } => format!("{CONFIG_FILE} names"),
        };
        problems.push(format!("{WEIGHTS_FILE} hashes to {weights_sha}; {source} {}", expected.weights.sha256));
    }
    problems.extend(differences(&serde_json::to_value(&claimed)?, &serde_json::to_value(&expected)?, CONFIG_FILE));
    let card_text = std::fs::read_to_string(folder.join(CARD_FILE)).unwrap_or_default();
    let rendered = card::render(&expected);
    if let Some((n, (have, want))) =
        card_text.lines().chain(std::iter::repeat("")).zip(rendered.lines()).enumerate().find(|(_, (a, b))| a != b)
    {
        problems.push(format!("{CARD_FILE} line {}: {have:?}; the record gives {want:?}", n + 1));
    } else if card_text.len() != rendered.len() {
        problems.push(format!("{CARD_FILE} has text after the card the record gives"));
    }
    Ok(problems)
}

/// The data files against what the release was trained on: the data manifest
/// the bundle's final state names, and the tokenizer the config pins.
fn check_data(cfg: &ModelConfig, manifest_sha: &Sha256Hex, tokenizer: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    if *manifest_sha != cfg.data_manifest_sha256 {
        problems.push(format!(
            "{DATA_MANIFEST_FILE} hashes to {manifest_sha}; the bundle trained on {}",
            cfg.data_manifest_sha256
        ));
    }
    let tokenizer_sha = proof::sha256_bytes(tokenizer);
    if cfg.tokenizer_sha256 != "unpinned" && cfg.tokenizer_sha256 != tokenizer_sha.as_str() {
        problems.push(format!(
            "{TOKENIZER_FILE} hashes to {tokenizer_sha}; config {} pins {}",
            cfg.config, cfg.tokenizer_sha256
        ));
    }
    problems
}

/// The crown note of a release; a release without one has no bundle to export.
pub(super) fn crowned(repo: &RecipeRepo, king: &King) -> Result<CrownNote> {
    let note = note::read(repo.git(), king.commit)?
        .with_context(|| format!("{} has no crown note (fetch refs/notes/karpa; the genesis has none)", king.tag))?;
    if note.weights.is_none() || note.final_state.is_none() {
        bail!("{}'s crown note predates weights digests: its weights cannot be verified offline", king.tag);
    }
    Ok(note)
}

fn final_state_of(note: &CrownNote) -> Result<FinalState> {
    note.final_state()?.context("the crown note carries no final state")
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The weights a folder holds and the run that made them.
pub(super) struct Trained {
    pub config: String,
    pub weights: WeightsDigest,
    pub data_manifest: Sha256Hex,
    pub training: Training,
    pub provenance: Provenance,
}

impl Trained {
    /// What a folder says of its own run.
    fn claimed_by(cfg: &ModelConfig) -> Self {
        Trained {
            config: cfg.config.clone(),
            weights: cfg.weights.clone(),
            data_manifest: cfg.data_manifest_sha256.clone(),
            training: cfg.training.clone(),
            provenance: cfg.provenance.clone(),
        }
    }
}

/// The crowned bundle's run, as its crown note records it.
fn of_bundle(note: &CrownNote) -> Result<Trained> {
    let final_state = final_state_of(note)?;
    let weights = note.weights.clone().context("the crown note names no weights")?;
    let run = training_run(note)?;
    let training = Training {
        seed: final_state.seed,
        steps: final_state.steps,
        tokens: final_state.tokens_seen,
        flops: 6.0 * weights.params as f64 * final_state.tokens_seen as f64,
        elapsed_s: final_state.elapsed_s,
        device: run.calibration.device,
        h100_equivalence: Some(run.calibration.h100_equivalence),
        started_at: run.started_at,
        finished_at: run.finished_at,
    };
    Ok(Trained {
        config: note.manifest.config.clone(),
        weights,
        data_manifest: final_state.data_manifest,
        training,
        provenance: Provenance::Bundle,
    })
}

/// `config.json` as the clone says it must be for `trained`: the tag's recipe
/// and protocol config for its config, the crown's numbers and the lineage.
pub(super) fn derive(repo: &RecipeRepo, king: &King, note: &CrownNote, trained: Trained) -> Result<ModelConfig> {
    let final_state = final_state_of(note)?;
    let config = trained.config;
    let protocol = repo.protocol_config(king.tree, &config)?;
    let config_path = format!("trainer/configs/{config}.toml");
    let protocol_bytes =
        repo.file(king.tree, &config_path)?.with_context(|| format!("the tag has no {config_path}"))?;
    let recipe_toml = repo.file(king.tree, "recipe/recipe.toml")?.context("the tag has no recipe/recipe.toml")?;
    let table: toml::Table = toml::from_str(&String::from_utf8_lossy(&recipe_toml)).context("recipe/recipe.toml")?;
    let hparams = serde_json::to_value(table.get(&config).with_context(|| format!("recipe.toml has no [{config}]"))?)?;
    let v = &note.verdict;
    let num =
        |x: &serde_json::Value, what: &str| x.as_f64().with_context(|| format!("the crown's verdict has no {what}"));
    let scores = Scores {
        hidden_bpb: num(&v["eval"]["hidden_bpb"], "hidden bpb")?,
        sigma: num(&v["decision"]["sigma"], "σ")?,
        floor_n: v["decision"]["n"].as_u64().context("the crown's verdict has no floor n")?,
        king: note.king.clone(),
        king_bpb: num(&v["decision"]["king_mean"], "king bpb")?,
        gain: num(&v["decision"]["gain"], "gain")?,
        confirmation_bpb: v["confirmation"]["hidden_bpb"]
            .as_array()
            .map(|a| a.iter().filter_map(|b| b.as_f64()).collect())
            .unwrap_or_default(),
        val_bpb: final_state.val_bpb,
    };
    let version = king.tag.trim_start_matches("recipe-");
    let name = match trained.provenance {
        Provenance::Bundle => format!("karpa-{config}-{version}"),
        Provenance::Reference { .. } => format!("karpa-{config}-{version}-reference"),
    };
    Ok(ModelConfig {
        format: MODEL_FORMAT.into(),
        name,
        tag: king.tag.clone(),
        commit: king.commit.to_string(),
        config: config.clone(),
        protocol_config_sha256: proof::sha256_bytes(&protocol_bytes),
        hparams,
        vocab_size: protocol.data.vocab_size,
        seq_len: protocol.seq_len,
        params: trained.weights.params,
        harness_digest: note.manifest.harness_digest.clone(),
        dataset: protocol.data.source.clone(),
        data_manifest_sha256: trained.data_manifest,
        tokenizer_sha256: protocol.data.tokenizer_sha256.clone(),
        bundle_digest: note.bundle_digest.clone(),
        bundle_url: note.bundle_url.clone(),
        crown_note_sha256: proof::sha256_bytes(&proof::canonical::to_canonical_bytes(note)?),
        weights: trained.weights,
        scores,
        training: trained.training,
        lineage: lineage_to(repo, king)?,
        signed_by: note.signatures.iter().map(|s| s.validator.clone()).collect(),
        provenance: trained.provenance,
    })
}

/// The attested training run inside the note's DSSE envelope (its signature is
/// `karpa lineage verify`'s to check).
fn training_run(note: &CrownNote) -> Result<proof::intoto::TrainingRun> {
    let envelope: proof::dsse::Envelope = serde_json::from_str(&note.attestation).context("the note's attestation")?;
    let payload =
        base64::engine::general_purpose::STANDARD.decode(&envelope.payload).context("the attestation's payload")?;
    let statement: proof::intoto::Statement =
        serde_json::from_slice(&payload).context("the attestation's statement")?;
    Ok(statement.predicate)
}

fn lineage_to(repo: &RecipeRepo, king: &King) -> Result<Vec<Release>> {
    let mut out = Vec::new();
    for release in repo.releases()? {
        let note = note::read(repo.git(), release.commit)?;
        let v = note.as_ref().map(|n| &n.verdict);
        out.push(Release {
            tag: release.tag.clone(),
            hidden_bpb: v.and_then(|v| v["eval"]["hidden_bpb"].as_f64()),
            gain: v.and_then(|v| v["decision"]["gain"].as_f64()),
            bundle_digest: note.as_ref().map(|n| n.bundle_digest.clone()),
        });
        if release.tag == king.tag {
            break;
        }
    }
    Ok(out)
}

/// Every leaf of `claimed` that is not `expected`'s, by JSON path.
fn differences(claimed: &serde_json::Value, expected: &serde_json::Value, at: &str) -> Vec<String> {
    use serde_json::Value::Object;
    match (claimed, expected) {
        (Object(a), Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let null = serde_json::Value::Null;
            keys.into_iter()
                .flat_map(|k| differences(a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null), &format!("{at}.{k}")))
                .collect()
        }
        (a, b) if a == b => vec![],
        (a, b) => vec![format!("{at} is {a}; the record gives {b}")],
    }
}
