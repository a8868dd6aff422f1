//! `karpa lineage verify <clone>`: every release tag after the first must carry a
//! crown note that proves it, offline. For each link king → release:
//! the release descends from the king; the note's manifest hashes to its bundle
//! digest and names the king as its base; the embedded attestation, signature,
//! patch and rationale match the manifest's digests; the attestation's DSSE
//! signature and the miner's hotkey signature hold; the patch applied to the
//! king's tree gives the attested tree, and the release's tree is that tree (bar
//! CHANGELOG.md); the harness is the king's; the verdict crowned this bundle
//! against this king, and its numbers clear its own threshold; and enough
//! validators of the trusted set in force (`validators.toml` in the king's tree,
//! see `trust`) signed this very note; the release tag is an annotated tag
//! signed by a tag key of that set (`signed_tag`); and the trusted set changes
//! only where a note so signed carries the new one.

use super::note::{self, CrownNote, NOTES_REF};
use super::trust::{TrustedSet, TRUST_FILE};
use crate::repo::{King, RecipeRepo};
use anyhow::Result;
use git2::Oid;
use proof::bundle::{verify_attestation, verify_miner_signature, BundleManifest, ATTESTATION};
use serde::Serialize;
use std::path::Path;

/// The file a crown adds to the release besides the patch.
const CHANGELOG: &str = "CHANGELOG.md";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

/// One release and what its proof says.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub tag: String,
    pub commit: String,
    /// The king it replaced; None for the first release (the genesis).
    pub king: Option<String>,
    /// The challenger's hidden bpb (the validator's runs where the guard ran).
    pub hidden_bpb: Option<f64>,
    /// The king's noise-floor mean it was judged against.
    pub king_bpb: Option<f64>,
    pub bundle_digest: Option<String>,
    /// The trusted validators whose signatures on the crown note hold.
    pub signers: Vec<String>,
    /// The trusted validator whose signature on the release tag holds.
    pub tag_signer: Option<String>,
    /// Whether this release put a new trusted set in force.
    pub trusted_set_changed: bool,
    /// The validators of the set in force here trusted through a public dev
    /// key: their signatures prove nothing (a warning; `--deny-dev-keys` fails it).
    pub dev_keys: Vec<String>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub links: Vec<Link>,
}

impl Report {
    pub fn holds(&self) -> bool {
        self.links.iter().all(|l| l.problems.is_empty())
    }

    /// Whether any release is trusted to a public dev key.
    pub fn dev_keyed(&self) -> bool {
        self.links.iter().any(|l| !l.dev_keys.is_empty())
    }
}

impl Link {
    fn new(tag: String, commit: String) -> Self {
        Link {
            tag,
            commit,
            king: None,
            hidden_bpb: None,
            king_bpb: None,
            bundle_digest: None,
            signers: Vec::new(),
            tag_signer: None,
            trusted_set_changed: false,
            dev_keys: Vec::new(),
            problems: Vec::new(),
        }
    }
}

pub fn verify(clone: &Path) -> Result<Report> {
    verify_from(clone, None)
}

/// [`verify`], with the genesis pinned: the clone's first release must be the
/// commit `genesis` names (its full id, or a prefix of at least 12 hex digits).
/// Without a pin, whoever serves the clone chooses the root of trust: another
/// history with another trusted set verifies just as well.
pub fn verify_from(clone: &Path, genesis: Option<&str>) -> Result<Report> {
    if let Some(g) = genesis.filter(|g| g.len() < 12 || g.len() > 40 || !g.bytes().all(|b| b.is_ascii_hexdigit())) {
        anyhow::bail!("--genesis {g:?} is not a commit id (12 to 40 hex digits)");
    }
    let repo = RecipeRepo::open(clone)?;
    let has_notes = repo.git().find_reference(NOTES_REF).is_ok();
    let mut links = Vec::new();
    // The release before, once one is a commit: the king each link is checked against.
    let mut king: Option<King> = None;
    for tag in repo.release_tags()? {
        // A release tag on a blob or a tree names nothing that could be a king;
        // any other failure to read the clone is an error, not a finding.
        let target = repo.git().revparse_single(&format!("refs/tags/{tag}"))?;
        let Ok(commit) = target.peel_to_commit() else {
            let what =
                target.peel(git2::ObjectType::Any).ok().and_then(|o| o.kind()).map_or("?".into(), |k| k.to_string());
            let mut link = Link::new(tag.clone(), String::new());
            let message = format!("{tag} points at a {what}, not a commit: it names nothing that could be a king");
            link.problems.push(Problem { code: "lineage.tag-target", message });
            links.push(link);
            continue;
        };
        let release = King { tag, commit: commit.id(), tree: commit.tree_id() };
        let mut link = Link::new(release.tag.clone(), release.commit.to_string());
        if let Some(king) = &king {
            link.king = Some(king.tag.clone());
            check_link(&repo, king, &release, has_notes, &mut link);
        } else if let Some(pin) = genesis.filter(|g| !release.commit.to_string().starts_with(&g.to_ascii_lowercase())) {
            link.problems.push(Problem {
                code: "lineage.genesis",
                message: format!(
                    "the clone's genesis {} is commit {}, not the pinned {pin}",
                    release.tag, release.commit
                ),
            });
        }
        links.push(link);
        king = Some(release);
    }
    Ok(Report { links })
}

fn check_link(repo: &RecipeRepo, king: &King, release: &King, has_notes: bool, link: &mut Link) {
    let mut problem = |code, message: String| link.problems.push(Problem { code, message });
    match repo.descends_from(release.commit, king.commit) {
        Ok(true) => {}
        Ok(false) => problem("lineage.ancestry", format!("{} does not descend from {}", release.tag, king.tag)),
        Err(e) => problem("lineage.ancestry", e.to_string()),
    }
    let note = match note::read(repo.git(), release.commit) {
        Ok(Some(n)) => n,
        Ok(None) if !has_notes => {
            return problem(
                "lineage.note-missing",
                format!("the clone has no {NOTES_REF}; fetch it: git fetch origin '{NOTES_REF}:{NOTES_REF}'"),
            )
        }
        Ok(None) => return problem("lineage.note-missing", format!("{} carries no crown note", release.tag)),
        Err(e) => return problem("lineage.note-unreadable", format!("{e:#}")),
    };
    link.bundle_digest = Some(note.bundle_digest.clone());
    let mut problems = Vec::new();
    check_note(repo, king, release, &note, &mut problems);
    let (bpb, king_bpb) = check_verdict(&note, &mut problems);
    link.trusted_set_changed = note.trusted_set.is_some();
    match TrustedSet::of_tree(repo, king.tree) {
        Ok(Some(set)) => {
            let (signers, found) = set.check(&note, &release.tag);
            if note.trusted_set.is_some() && !found.is_empty() {
                problems.push(Problem {
                    code: "lineage.trusted-set-change",
                    message: format!(
                        "{} puts a new {TRUST_FILE} in force without the signatures of the set it replaces ({}'s)",
                        release.tag, king.tag
                    ),
                });
            }
            link.signers = signers;
            link.dev_keys = set.dev_keyed();
            problems.extend(found);
            match check_tag(repo, &set, release) {
                Ok(signer) => link.tag_signer = Some(signer),
                Err(p) => problems.push(p),
            }
        }
        Ok(None) => problems.push(Problem {
            code: "lineage.trusted-set",
            message: format!("{} names no validators ({TRUST_FILE}): nobody may crown", king.tag),
        }),
        Err(e) => problems.push(Problem { code: "lineage.trusted-set", message: format!("{}: {e:#}", king.tag) }),
    }
    link.hidden_bpb = bpb;
    link.king_bpb = king_bpb;
    link.problems.extend(problems);
}

/// The bundle embedded in the note against the repository's trees.
fn check_note(repo: &RecipeRepo, king: &King, release: &King, note: &CrownNote, out: &mut Vec<Problem>) {
    let mut problem = |code, message: String| out.push(Problem { code, message });
    let m = &note.manifest;
    if note.tag != release.tag || note.king != king.tag {
        problem("lineage.note-tags", format!("the note crowns {} over {}", note.tag, note.king));
    }
    if m.digest().as_str() != note.bundle_digest {
        problem("lineage.bundle-digest", format!("the manifest hashes to {}, not {}", m.digest(), note.bundle_digest));
    }
    if m.king_tag != king.tag || m.king_commit != king.commit.to_string() {
        problem("lineage.base", format!("the bundle was trained on {} at {}", m.king_tag, m.king_commit));
    }
    let carried = [
        (ATTESTATION, Some(&note.attestation)),
        ("patch.diff", Some(&note.patch)),
        ("rationale.md", Some(&note.rationale)),
        ("final_state.json", note.final_state.as_ref()),
    ];
    for (name, bytes) in carried.into_iter().filter_map(|(n, b)| Some((n, b?))) {
        if let Some(why) = file_mismatch(m, name, bytes.as_bytes()) {
            problem("lineage.file-digest", why);
        }
    }
    for f in verify_attestation(note.attestation.as_bytes(), m, &[]) {
        problem("lineage.attestation", format!("{}: {}", f.code, f.message));
    }
    if let Some(f) = verify_miner_signature(note.miner_signature.as_bytes(), m) {
        problem("lineage.hotkey", format!("{}: {}", f.code, f.message));
    }
    match repo.harness_digest(king.tree) {
        Ok(d) if d == m.harness_digest => {}
        Ok(d) => {
            problem("lineage.harness", format!("{}'s harness is {d}, the bundle's {}", king.tag, m.harness_digest))
        }
        Err(e) => problem("lineage.harness", format!("{e:#}")),
    }
    match patched_tree(repo, king, &note.patch) {
        Ok(tree) if tree.to_string() == m.patched_tree => check_release_tree(repo, king, release, note, tree, out),
        Ok(tree) => out.push(Problem {
            code: "lineage.patch",
            message: format!("the patch on {} gives tree {tree}, not {}", king.tag, m.patched_tree),
        }),
        Err(e) => out.push(Problem { code: "lineage.patch", message: format!("{e:#}") }),
    }
}

/// The release's files are the king's with the crowned patch applied, bar
/// CHANGELOG.md and, where the note carries a new trusted set, that set; the
/// patch itself leaves the trusted set alone.
fn check_release_tree(
    repo: &RecipeRepo,
    king: &King,
    release: &King,
    note: &CrownNote,
    patched: Oid,
    out: &mut Vec<Problem>,
) {
    let mut problem = |code, message: String| out.push(Problem { code, message });
    let set_of = |tree| repo.file(tree, TRUST_FILE).map_err(|e| format!("{e:#}"));
    if set_of(patched) != set_of(king.tree) {
        problem("lineage.trusted-set-change", format!("the patch crowned as {} changes {TRUST_FILE}", release.tag));
    }
    let mut ignored = vec![CHANGELOG];
    if let Some(text) = &note.trusted_set {
        ignored.push(TRUST_FILE);
        if set_of(release.tree) != Ok(Some(text.as_bytes().to_vec())) {
            problem(
                "lineage.trusted-set-change",
                format!("{}'s {TRUST_FILE} is not the set its crown note puts in force", release.tag),
            );
        }
        if let Err(e) = TrustedSet::parse(text) {
            problem("lineage.trusted-set-change", format!("{}: the new set: {e:#}", release.tag));
        }
    }
    match (without(repo, patched, &ignored), without(repo, release.tree, &ignored)) {
        (Ok(a), Ok(b)) if a == b => {}
        (Ok(_), Ok(_)) => problem(
            "lineage.release-tree",
            format!("{}'s files are not the king's with the crowned patch applied", release.tag),
        ),
        (Err(e), _) | (_, Err(e)) => problem("lineage.release-tree", format!("{e:#}")),
    }
}

/// The release tag must be an annotated tag of its own name on the release
/// commit, signed by a tag key of `set`: the signer's name.
fn check_tag(repo: &RecipeRepo, set: &TrustedSet, release: &King) -> Result<String, Problem> {
    let problem = |code, message: String| Problem { code, message };
    let git = repo.git();
    let id = git
        .refname_to_id(&format!("refs/tags/{}", release.tag))
        .map_err(|e| problem("lineage.tag-unsigned", format!("{}: {e}", release.tag)))?;
    let Ok(tag) = git.find_tag(id) else {
        return Err(problem("lineage.tag-unsigned", format!("{} is a lightweight tag: nothing signs it", release.tag)));
    };
    if tag.name_bytes() != release.tag.as_bytes() || tag.target_id() != release.commit {
        return Err(problem(
            "lineage.tag-name",
            format!("refs/tags/{} holds the tag object of {:?} on {}", release.tag, tag.name(), tag.target_id()),
        ));
    }
    let unreadable = |e: git2::Error| problem("lineage.tag-unsigned", format!("{}: {e}", release.tag));
    let odb = git.odb().map_err(unreadable)?;
    let raw = odb.read(id).map_err(unreadable)?;
    set.check_tag(raw.data(), &release.tag)
}

/// The verdict must crown this bundle over this king by its own numbers.
/// Returns (challenger bpb, king bpb).
fn check_verdict(note: &CrownNote, out: &mut Vec<Problem>) -> (Option<f64>, Option<f64>) {
    let v = &note.verdict;
    let mut problem = |message: String| out.push(Problem { code: "lineage.verdict", message });
    if v["class"] != "crowned" {
        problem(format!("the verdict's class is {}, not crowned", v["class"]));
    }
    if v["bundle_digest"].as_str() != Some(note.bundle_digest.as_str()) || v["king"].as_str() != Some(&note.king) {
        problem("the verdict is about another bundle or king".into());
    }
    let num = |x: &serde_json::Value| x.as_f64();
    let d = &v["decision"];
    let (Some(king), Some(challenger), Some(gain), Some(threshold)) =
        (num(&d["king_mean"]), num(&d["challenger"]), num(&d["gain"]), num(&d["threshold"]))
    else {
        problem("the verdict has no decision numbers".into());
        return (None, None);
    };
    const EPS: f64 = 1e-9;
    if (king - challenger - gain).abs() > EPS {
        problem(format!("gain {gain} is not {king} − {challenger}"));
    }
    let c = &v["confirmation"];
    if c.is_null() {
        if gain < threshold - EPS {
            problem(format!("gain {gain:.5} is below the threshold {threshold:.5}"));
        }
        return (Some(challenger), Some(king));
    }
    let runs: Option<Vec<f64>> = c["hidden_bpb"].as_array().map(|a| a.iter().filter_map(|b| b.as_f64()).collect());
    let (Some(runs), Some(mean), Some(threshold)) = (runs, num(&c["mean"]), num(&c["threshold"])) else {
        problem("the confirmation runs are incomplete".into());
        return (Some(challenger), Some(king));
    };
    let recomputed = runs.iter().sum::<f64>() / runs.len().max(1) as f64;
    if runs.is_empty() || (recomputed - mean).abs() > EPS || c["passed"] != true {
        problem(format!("the confirmation runs {runs:?} do not average to a passing {mean}"));
    } else if king - mean < threshold - EPS {
        problem(format!("the validator's runs gained {:.5}, below the threshold {threshold:.5}", king - mean));
    }
    (Some(mean), Some(king))
}

fn file_mismatch(m: &BundleManifest, name: &str, bytes: &[u8]) -> Option<String> {
    let Some(entry) = m.files.iter().find(|f| f.path == name) else {
        return Some(format!("the manifest lists no {name}"));
    };
    let digest = proof::sha256_bytes(bytes);
    (entry.sha256 != digest || entry.size != bytes.len() as u64)
        .then(|| format!("{name} in the note has sha256 {digest}, the manifest says {}", entry.sha256))
}

fn patched_tree(repo: &RecipeRepo, king: &King, patch: &str) -> Result<Oid> {
    let diff = git2::Diff::from_buffer(patch.as_bytes())?;
    repo.apply_patch(king.tree, &diff)
}

/// `tree` with the top-level entries `names` removed (those absent are skipped).
fn without(repo: &RecipeRepo, tree: Oid, names: &[&str]) -> Result<Oid> {
    let git = repo.git();
    let mut builder = git.treebuilder(Some(&git.find_tree(tree)?))?;
    for name in names {
        if builder.get(name)?.is_some() {
            builder.remove(name)?;
        }
    }
    Ok(builder.write()?)
}
