//! The rules a recipe tree must keep, whoever asks: the judge's diff scan and
//! the miner's check before it spends a training on a change. Changed paths
//! inside the allowlist, every recipe source file through the syn scan, and
//! recipe.toml in the shape the protocol allows.

use super::Finding;
use crate::repo::RecipeRepo;
use anyhow::Result;

/// Every finding against `tree` as a change of the king's `king_tree`.
pub fn findings(repo: &RecipeRepo, king_tree: git2::Oid, tree: git2::Oid) -> Result<Vec<Finding>> {
    let diff = repo.tree_diff(king_tree, tree)?;
    let mut out: Vec<Finding> = crate::allowlist::check_patch(&diff)
        .into_iter()
        .map(|v| Finding::reject("diff.path", &v.path, None, v.reason))
        .collect();
    let files = repo.files(tree)?;
    out.extend(super::scan::scan_tree(&files));
    if let Some((_, text)) = files.iter().find(|(p, _)| p == "recipe/recipe.toml") {
        let configs: Vec<String> = repo
            .files(king_tree)?
            .into_iter()
            .filter_map(|(p, _)| Some(p.strip_prefix("trainer/configs/")?.strip_suffix(".toml")?.to_string()))
            .collect();
        out.extend(super::recipe_toml::check(&String::from_utf8_lossy(text), &configs));
    }
    Ok(out)
}
