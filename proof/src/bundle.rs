//! The proof bundle: a folder whose `manifest.json` lists every payload file and
//! the attestation by size and sha256. The bundle digest is sha256 of the
//! manifest's RFC 8785 form; the miner's hotkey signs that digest (in
//! `miner.sig.json`, the one file the manifest cannot list).

use crate::canonical::to_canonical_bytes;
use crate::dsse::Envelope;
use crate::intoto::{Statement, Subject, PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE};
use crate::{sha256_bytes, sha256_file, Sha256Hex};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const BUNDLE_FORMAT: &str = "karpa-bundle/v1";
pub const MANIFEST: &str = "manifest.json";
pub const ATTESTATION: &str = "attestation.json";
pub const MINER_SIG: &str = "miner.sig.json";
/// Files every bundle carries besides its checkpoints.
pub const REQUIRED: &[&str] =
    &["patch.diff", "rationale.md", "log.jsonl", "final_state.json", "calibration.json", ATTESTATION];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub format: String,
    pub king_tag: String,
    pub king_commit: String,
    pub patched_tree: String,
    pub config: String,
    pub seed: u64,
    pub harness_digest: Sha256Hex,
    pub miner_hotkey: String,
    pub github_login: String,
    /// 32 random bytes, hex: makes every bundle unique, so replays are detectable.
    pub nonce: String,
    /// Raw ed25519 public key (hex) of the run's attestation key.
    pub attestation_key: String,
    /// Every file but manifest.json and miner.sig.json, sorted by path.
    pub files: Vec<BundleFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Hex,
}

impl BundleManifest {
    pub fn digest(&self) -> Sha256Hex {
        sha256_bytes(&to_canonical_bytes(self).expect("a manifest always serialises"))
    }
}

/// What the official trainer knows about a finished run, to be attested.
#[derive(Debug, Clone)]
pub struct RunClaims {
    pub king_tag: String,
    pub king_commit: String,
    pub patched_tree: String,
    pub config: String,
    pub seed: u64,
    pub harness_digest: Sha256Hex,
    pub miner_hotkey: String,
    pub github_login: String,
    pub calibration: crate::intoto::CalibrationSummary,
    pub started_at: String,
    pub finished_at: String,
    pub log_chain: Vec<Sha256Hex>,
    pub tier: String,
}

/// Seals a folder of payload files into a bundle: signs the in-toto statement
/// over every file with `key`, writes `attestation.json`, then `manifest.json`.
pub fn assemble(
    dir: &Path,
    claims: &RunClaims,
    key: &ed25519_dalek::SigningKey,
    nonce: [u8; 32],
) -> std::io::Result<BundleManifest> {
    let nonce = hex::encode(nonce);
    let mut files = Vec::new();
    for rel in walk(dir)? {
        if rel == MANIFEST || rel == MINER_SIG || rel == ATTESTATION {
            continue;
        }
        let path = dir.join(&rel);
        files.push(BundleFile { size: std::fs::metadata(&path)?.len(), sha256: sha256_file(&path)?, path: rel });
    }
    files.sort();
    let statement = Statement {
        type_: STATEMENT_TYPE.into(),
        subject: files.iter().map(|f| Subject::sha256(&f.path, &f.sha256)).collect(),
        predicate_type: PREDICATE_TYPE.into(),
        predicate: crate::intoto::TrainingRun {
            king_tag: claims.king_tag.clone(),
            king_commit: claims.king_commit.clone(),
            patched_tree: claims.patched_tree.clone(),
            config: claims.config.clone(),
            seed: claims.seed,
            harness_digest: claims.harness_digest.clone(),
            calibration: claims.calibration.clone(),
            started_at: claims.started_at.clone(),
            finished_at: claims.finished_at.clone(),
            log_chain: claims.log_chain.clone(),
            tier: claims.tier.clone(),
            nonce: nonce.clone(),
            miner_hotkey: claims.miner_hotkey.clone(),
            github_login: claims.github_login.clone(),
            tee_evidence: None,
        },
    };
    let payload = to_canonical_bytes(&statement).map_err(std::io::Error::other)?;
    let envelope = crate::dsse::sign(PAYLOAD_TYPE, &payload, key);
    let at_path = dir.join(ATTESTATION);
    crate::fsio::write_json_atomic(&at_path, &envelope)?;
    files.push(BundleFile {
        path: ATTESTATION.into(),
        size: std::fs::metadata(&at_path)?.len(),
        sha256: sha256_file(&at_path)?,
    });
    files.sort();
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT.into(),
        king_tag: claims.king_tag.clone(),
        king_commit: claims.king_commit.clone(),
        patched_tree: claims.patched_tree.clone(),
        config: claims.config.clone(),
        seed: claims.seed,
        harness_digest: claims.harness_digest.clone(),
        miner_hotkey: claims.miner_hotkey.clone(),
        github_login: claims.github_login.clone(),
        nonce,
        attestation_key: hex::encode(key.verifying_key().as_bytes()),
        files,
    };
    crate::fsio::write_json_atomic(&dir.join(MANIFEST), &manifest)?;
    Ok(manifest)
}

/// Every non-directory entry under `dir`, as relative paths with `/`.
fn walk(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let rel = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type()?.is_dir() {
                stack.push((e.path(), format!("{rel}/")));
            } else {
                found.push(rel);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// One thing wrong with a bundle: a stable code, a sentence, and the file it concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

fn finding(code: &'static str, file: Option<&str>, message: impl Into<String>) -> Finding {
    Finding { code, message: message.into(), file: file.map(str::to_string) }
}

/// A relative path inside the bundle: no absolute paths, `..`, empty or odd parts.
pub fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\') && !p.contains('\0'))
}

/// Offline checks of a bundle folder: manifest, files, attestation, hotkey. Returns
/// the manifest when it could be read, and every finding (empty = all hold).
/// Trusts no TEE verifier: a `tee` bundle needs [`verify_dir_with`].
pub fn verify_dir(dir: &Path) -> (Option<BundleManifest>, Vec<Finding>) {
    verify_dir_with(dir, &[])
}

/// [`verify_dir`] with the hardware-evidence verifiers this validator trusts.
pub fn verify_dir_with(dir: &Path, tee: &[&dyn crate::tee::TeeVerifier]) -> (Option<BundleManifest>, Vec<Finding>) {
    let mut out = Vec::new();
    let manifest: BundleManifest = match std::fs::read(dir.join(MANIFEST)) {
        Err(e) => return (None, vec![finding("manifest.missing", Some(MANIFEST), e.to_string())]),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return (None, vec![finding("manifest.schema", Some(MANIFEST), e.to_string())]),
        },
    };
    if manifest.format != BUNDLE_FORMAT {
        out.push(finding(
            "manifest.format",
            Some(MANIFEST),
            format!("format {:?}, expected {BUNDLE_FORMAT}", manifest.format),
        ));
    }
    let mut sorted = manifest.files.clone();
    sorted.sort();
    sorted.dedup_by(|a, b| a.path == b.path);
    if sorted != manifest.files {
        out.push(finding("manifest.order", Some(MANIFEST), "files must be sorted by path and unique"));
    }
    for f in &manifest.files {
        out.extend(check_file(dir, f));
    }
    for name in REQUIRED {
        if !manifest.files.iter().any(|f| f.path == *name) {
            out.push(finding("bundle.required", Some(name), format!("{name} is missing from the manifest")));
        }
    }
    if !manifest.files.iter().any(|f| f.path.starts_with("checkpoints/") && f.path.ends_with(".safetensors")) {
        out.push(finding("bundle.required", None, "the bundle has no checkpoint"));
    }
    out.extend(unlisted_files(dir, &manifest));
    out.extend(check_attestation(dir, &manifest, tee));
    out.extend(check_miner_signature(dir, &manifest));
    (Some(manifest), out)
}

/// Signs the bundle's digest with the miner's hotkey into `miner.sig.json`.
pub fn sign_as_miner(
    dir: &Path,
    manifest: &BundleManifest,
    hotkey: &subxt_signer::sr25519::Keypair,
) -> std::io::Result<()> {
    let sig = crate::hotkey::sign(hotkey, &manifest.digest(), &manifest.github_login);
    crate::fsio::write_json_atomic(&dir.join(MINER_SIG), &sig)
}

fn check_miner_signature(dir: &Path, m: &BundleManifest) -> Option<Finding> {
    match std::fs::read(dir.join(MINER_SIG)) {
        Ok(bytes) => verify_miner_signature(&bytes, m),
        Err(_) => Some(finding("hotkey.missing", Some(MINER_SIG), "the bundle is not signed by a hotkey")),
    }
}

/// Checks `miner.sig.json`'s bytes: the manifest's hotkey signed its digest for its login.
pub fn verify_miner_signature(bytes: &[u8], m: &BundleManifest) -> Option<Finding> {
    let file = Some(MINER_SIG);
    let sig: crate::hotkey::MinerSignature = match serde_json::from_slice(bytes) {
        Ok(s) => s,
        Err(e) => return Some(finding("hotkey.schema", file, format!("not a miner signature: {e}"))),
    };
    crate::hotkey::verify(&sig, &m.digest(), &m.miner_hotkey, &m.github_login).err().map(|e| {
        finding(
            "hotkey.signature",
            file,
            format!("{e}: {} must sign this bundle's digest for {}", m.miner_hotkey, m.github_login),
        )
    })
}

fn check_file(dir: &Path, f: &BundleFile) -> Option<Finding> {
    if !safe_relative(&f.path) || f.path == MANIFEST || f.path == MINER_SIG {
        return Some(finding("file.path", Some(&f.path), "path is not allowed in a bundle"));
    }
    let path = dir.join(&f.path);
    match std::fs::symlink_metadata(&path) {
        Err(_) => Some(finding("file.missing", Some(&f.path), "listed in the manifest but absent")),
        Ok(m) if !m.file_type().is_file() => Some(finding("file.type", Some(&f.path), "not a regular file")),
        Ok(m) if m.len() != f.size => {
            Some(finding("file.size", Some(&f.path), format!("{} bytes, the manifest says {}", m.len(), f.size)))
        }
        Ok(_) => match sha256_file(&path) {
            Ok(d) if d == f.sha256 => None,
            Ok(d) => Some(finding("file.digest", Some(&f.path), format!("sha256 {d}, the manifest says {}", f.sha256))),
            Err(e) => Some(finding("file.unreadable", Some(&f.path), e.to_string())),
        },
    }
}

/// Anything in the folder the manifest does not account for.
fn unlisted_files(dir: &Path, manifest: &BundleManifest) -> Vec<Finding> {
    let found = match walk(dir) {
        Ok(f) => f,
        Err(e) => return vec![finding("bundle.unreadable", None, e.to_string())],
    };
    found
        .into_iter()
        .filter(|rel| rel != MANIFEST && rel != MINER_SIG && !manifest.files.iter().any(|f| &f.path == rel))
        .map(|rel| finding("file.unlisted", Some(&rel), "present but not in the manifest"))
        .collect()
}

fn check_attestation(dir: &Path, m: &BundleManifest, tee: &[&dyn crate::tee::TeeVerifier]) -> Vec<Finding> {
    match std::fs::read(dir.join(ATTESTATION)) {
        Ok(bytes) => verify_attestation(&bytes, m, tee),
        Err(e) => vec![finding("attestation.missing", Some(ATTESTATION), e.to_string())],
    }
}

/// Checks `attestation.json`'s bytes against the manifest: the DSSE signature by the
/// run's key, the statement's subjects (every other file) and its predicate.
pub fn verify_attestation(bytes: &[u8], m: &BundleManifest, tee: &[&dyn crate::tee::TeeVerifier]) -> Vec<Finding> {
    let at = Some(ATTESTATION);
    let fail = |code, msg: String| vec![finding(code, at, msg)];
    let envelope: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => return fail("attestation.schema", format!("not a DSSE envelope: {e}")),
    };
    let key = match hex::decode(&m.attestation_key).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(raw) => match ed25519_dalek::VerifyingKey::from_bytes(&raw) {
            Ok(k) => k,
            Err(_) => return fail("attestation.key", "attestation_key is not an ed25519 point".into()),
        },
        None => return fail("attestation.key", "attestation_key is not 32 hex bytes".into()),
    };
    if envelope.payload_type != PAYLOAD_TYPE {
        return fail("attestation.type", format!("payloadType {:?}, expected {PAYLOAD_TYPE}", envelope.payload_type));
    }
    let payload = match envelope.verify(&key) {
        Ok(p) => p,
        Err(e) => return fail("attestation.signature", e.to_string()),
    };
    let st: Statement = match serde_json::from_slice(&payload) {
        Ok(s) => s,
        Err(e) => return fail("attestation.statement", format!("not a Karpa in-toto statement: {e}")),
    };
    let mut out = Vec::new();
    if st.type_ != STATEMENT_TYPE || st.predicate_type != PREDICATE_TYPE {
        out.push(finding(
            "attestation.statement",
            at,
            format!("_type {:?} / predicateType {:?}", st.type_, st.predicate_type),
        ));
    }
    // Subjects: exactly the manifest's files other than the attestation itself.
    let mut want: Vec<Subject> =
        m.files.iter().filter(|f| f.path != ATTESTATION).map(|f| Subject::sha256(&f.path, &f.sha256)).collect();
    let mut got = st.subject.clone();
    want.sort_by(|a, b| a.name.cmp(&b.name));
    got.sort_by(|a, b| a.name.cmp(&b.name));
    if want != got {
        out.push(finding("attestation.subjects", at, "the attested files differ from the bundle's files"));
    }
    let p = &st.predicate;
    let pairs = [
        ("king_tag", &p.king_tag, &m.king_tag),
        ("king_commit", &p.king_commit, &m.king_commit),
        ("patched_tree", &p.patched_tree, &m.patched_tree),
        ("config", &p.config, &m.config),
        ("nonce", &p.nonce, &m.nonce),
        ("miner_hotkey", &p.miner_hotkey, &m.miner_hotkey),
        ("github_login", &p.github_login, &m.github_login),
    ];
    for (name, attested, claimed) in pairs {
        if attested != claimed {
            out.push(finding(
                "attestation.predicate",
                at,
                format!("{name}: attested {attested:?}, manifest {claimed:?}"),
            ));
        }
    }
    if p.seed != m.seed || p.harness_digest != m.harness_digest {
        out.push(finding("attestation.predicate", at, "seed or harness digest differs from the manifest"));
    }
    if let Err(e) = crate::tee::check_tier(p, &key.to_bytes(), tee) {
        out.push(finding("attestation.tier", at, e.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intoto::CalibrationSummary;

    fn claims() -> RunClaims {
        RunClaims {
            king_tag: "recipe-v0.1.0".into(),
            king_commit: "a".repeat(40),
            patched_tree: "b".repeat(40),
            config: "micro".into(),
            seed: 1337,
            harness_digest: sha256_bytes(b"harness"),
            miner_hotkey: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".into(),
            github_login: "miner".into(),
            calibration: CalibrationSummary {
                device: "cpu".into(),
                matmul_2048_fp32_ms: 60.0,
                h100_equivalence: 0.0085,
            },
            started_at: "2026-11-26T05:00:00Z".into(),
            finished_at: "2026-11-26T05:01:00Z".into(),
            log_chain: vec![sha256_bytes(b"x")],
            tier: "software".into(),
        }
    }

    fn bundle() -> (tempfile::TempDir, BundleManifest) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checkpoints")).unwrap();
        for f in [
            "patch.diff",
            "rationale.md",
            "log.jsonl",
            "final_state.json",
            "calibration.json",
            "checkpoints/step-40.safetensors",
        ] {
            std::fs::write(dir.path().join(f), format!("contents of {f}")).unwrap();
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let m = assemble(dir.path(), &claims(), &key, [9u8; 32]).unwrap();
        sign_as_miner(dir.path(), &m, &crate::hotkey::keypair_from_uri("//Alice").unwrap()).unwrap();
        (dir, m)
    }

    fn codes(dir: &Path) -> Vec<&'static str> {
        verify_dir(dir).1.iter().map(|f| f.code).collect()
    }

    #[test]
    fn an_assembled_bundle_verifies_and_its_digest_is_stable() {
        let (dir, m) = bundle();
        let (read, findings) = verify_dir(dir.path());
        assert!(findings.is_empty(), "{findings:#?}");
        assert_eq!(read.unwrap().digest(), m.digest());
        assert_eq!(m.files.len(), 7);
    }

    #[test]
    fn a_changed_file_is_caught_by_digest() {
        let (dir, _) = bundle();
        std::fs::write(dir.path().join("log.jsonl"), "contents of log.jsonL").unwrap();
        assert_eq!(codes(dir.path()), vec!["file.digest"]);
    }

    #[test]
    fn a_rewritten_manifest_no_longer_matches_the_attestation() {
        // Someone changes a file and updates the manifest to match: the signed
        // statement still names the old digest.
        let (dir, mut m) = bundle();
        std::fs::write(dir.path().join("log.jsonl"), "a better log").unwrap();
        let f = m.files.iter_mut().find(|f| f.path == "log.jsonl").unwrap();
        f.size = 12;
        f.sha256 = sha256_bytes(b"a better log");
        crate::fsio::write_json_atomic(&dir.path().join(MANIFEST), &m).unwrap();
        // (The hotkey signed the old manifest, so that breaks too.)
        assert_eq!(codes(dir.path()), vec!["attestation.subjects", "hotkey.signature"]);
    }

    #[test]
    fn a_claimed_key_that_did_not_sign_is_refused() {
        let (dir, mut m) = bundle();
        let other = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]);
        m.attestation_key = hex::encode(other.verifying_key().as_bytes());
        crate::fsio::write_json_atomic(&dir.path().join(MANIFEST), &m).unwrap();
        assert_eq!(codes(dir.path()), vec!["attestation.signature", "hotkey.signature"]);
    }

    #[test]
    fn the_attested_king_must_be_the_claimed_king() {
        let (dir, mut m) = bundle();
        m.king_tag = "recipe-v0.1.7".into();
        crate::fsio::write_json_atomic(&dir.path().join(MANIFEST), &m).unwrap();
        let (_, findings) = verify_dir(dir.path());
        assert_eq!(findings.len(), 2);
        assert!(findings[0].message.contains("king_tag"), "{findings:?}");
        assert_eq!(findings[1].code, "hotkey.signature");
    }

    #[test]
    fn traversal_unlisted_and_missing_files() {
        let (dir, mut m) = bundle();
        std::fs::write(dir.path().join("extra.bin"), "x").unwrap();
        m.files.push(BundleFile { path: "../outside".into(), size: 1, sha256: sha256_bytes(b"x") });
        m.files.sort();
        crate::fsio::write_json_atomic(&dir.path().join(MANIFEST), &m).unwrap();
        std::fs::remove_file(dir.path().join("rationale.md")).unwrap();
        let got = codes(dir.path());
        for want in ["file.path", "file.unlisted", "file.missing"] {
            assert!(got.contains(&want), "{want} not in {got:?}");
        }
        assert!(
            !safe_relative("a/../b")
                && !safe_relative("/etc/passwd")
                && safe_relative("checkpoints/step-1.safetensors")
        );
    }

    #[test]
    fn a_bundle_re_attributed_to_another_hotkey_is_refused() {
        // Bob takes Alice's bundle, names himself in the manifest and signs it.
        let (dir, mut m) = bundle();
        let bob = crate::hotkey::keypair_from_uri("//Bob").unwrap();
        m.miner_hotkey = crate::hotkey::ss58(&bob);
        m.github_login = "bob".into();
        crate::fsio::write_json_atomic(&dir.path().join(MANIFEST), &m).unwrap();
        sign_as_miner(dir.path(), &m, &bob).unwrap();
        let (_, findings) = verify_dir(dir.path());
        assert_eq!(
            findings.iter().map(|f| f.code).collect::<Vec<_>>(),
            vec!["attestation.predicate"; 2],
            "{findings:?}"
        );
    }

    #[test]
    fn a_bundle_signed_by_another_hotkey_or_unsigned_is_refused() {
        let (dir, m) = bundle();
        sign_as_miner(dir.path(), &m, &crate::hotkey::keypair_from_uri("//Bob").unwrap()).unwrap();
        assert_eq!(codes(dir.path()), vec!["hotkey.signature"]);
        std::fs::remove_file(dir.path().join(MINER_SIG)).unwrap();
        assert_eq!(codes(dir.path()), vec!["hotkey.missing"]);
    }

    #[test]
    fn a_missing_or_garbled_manifest_is_one_clear_finding() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(codes(dir.path()), vec!["manifest.missing"]);
        std::fs::write(dir.path().join(MANIFEST), "{").unwrap();
        assert_eq!(codes(dir.path()), vec!["manifest.schema"]);
    }
}
