//! The normalised-diff digest: two submissions that make the same change hash the
//! same even when formatting, comments or TOML spelling differ (`3e-3` and
//! `0.003`, reordered keys). It is the key of the duplicate check.

use crate::repo::RecipeRepo;
use anyhow::Result;
use proc_macro2::{TokenStream, TokenTree};
use sha2::{Digest, Sha256};

/// sha256 over every changed path with its normalised content in `head`
/// (deleted paths hash as deleted), in path order.
pub fn normalized_diff_digest(repo: &RecipeRepo, base: git2::Oid, head: git2::Oid) -> Result<String> {
    let diff = repo.tree_diff(base, head)?;
    // Only the changed paths are read from `head` (the miner's compass digests
    // every move it considers).
    let mut changed: Vec<(String, Option<String>)> = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path().and_then(|p| p.to_str()) {
                let content = repo.file(head, path)?.map(|bytes| normalize(path, &bytes));
                changed.push((path.to_string(), content));
            }
        }
    }
    changed.sort();
    changed.dedup();
    let mut h = Sha256::new();
    for (path, content) in &changed {
        h.update(path.as_bytes());
        match content {
            Some(c) => h.update([&[1u8][..], &(c.len() as u64).to_le_bytes(), c.as_bytes()].concat()),
            None => h.update([0u8]),
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Rust as its token stream without comments and doc attributes; TOML as its
/// canonical JSON value; anything else with whitespace runs collapsed.
fn normalize(path: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let parsed = if path.ends_with(".rs") {
        text.parse::<TokenStream>().ok().map(|ts| without_docs(ts).to_string())
    } else if path.ends_with(".toml") {
        text.parse::<toml::Table>().ok().and_then(|t| serde_json::to_string(&t).ok())
    } else {
        None
    };
    parsed.unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Drops `#[doc = "…"]` (what `///` comments become) at every depth.
fn without_docs(ts: TokenStream) -> TokenStream {
    let tokens: Vec<TokenTree> = ts.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let (TokenTree::Punct(p), Some(TokenTree::Group(g))) = (&tokens[i], tokens.get(i + 1)) {
            if p.as_char() == '#' && g.stream().into_iter().next().is_some_and(|t| t.to_string() == "doc") {
                i += 2;
                continue;
            }
        }
        out.push(match &tokens[i] {
            TokenTree::Group(g) => {
                let mut group = proc_macro2::Group::new(g.delimiter(), without_docs(g.stream()));
                group.set_span(g.span());
                TokenTree::Group(group)
            }
            t => t.clone(),
        });
        i += 1;
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn formatting_comments_and_spelling_do_not_change_the_normal_form() {
        let a = "/// Warmup.\nfn lr(step: u64) -> f64 { // linear\n    3e-3 * step as f64 }\n";
        let b = "fn lr(step:u64)->f64{3e-3*step as f64}";
        assert_eq!(normalize("recipe/src/optim.rs", a.as_bytes()), normalize("recipe/src/optim.rs", b.as_bytes()));
        let c = "fn lr(step: u64) -> f64 { 4e-3 * step as f64 }";
        assert_ne!(normalize("recipe/src/optim.rs", b.as_bytes()), normalize("recipe/src/optim.rs", c.as_bytes()));

        let t1 = "[tiny]\nlr = 3e-3\nwarmup = 10 # steps\n";
        let t2 = "[tiny]\nwarmup = 10\nlr = 0.003\n";
        assert_eq!(normalize("recipe/recipe.toml", t1.as_bytes()), normalize("recipe/recipe.toml", t2.as_bytes()));
        assert_ne!(
            normalize("recipe/recipe.toml", t1.as_bytes()),
            normalize("recipe/recipe.toml", b"[tiny]\nlr = 0.004\nwarmup = 10\n")
        );
    }
}
