//! What a miner may change: an allowlist, never a denylist. Everything outside it
//! (harness, proof, manifests, build scripts, lock files, configs) is locked.

/// Whether a repository path may be changed by a miner's patch.
pub fn patchable(path: &str) -> bool {
    let safe = !path.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    safe && (path == "recipe/recipe.toml"
        || path == "recipe/RATIONALE.md"
        || (path.starts_with("recipe/src/") && path.ends_with(".rs")))
}

/// A change a patch may not make, with the path it concerns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    pub path: String,
    pub reason: String,
}

/// Every violation in a parsed patch: paths outside the allowlist, binary
/// content, and anything that is not a plain file (links, executables, submodules).
pub fn check_patch(diff: &git2::Diff<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            let Some(path) = file.path() else { continue };
            let Some(path) = path.to_str() else {
                out.push(Violation { path: path.display().to_string(), reason: "paths must be UTF-8".into() });
                continue;
            };
            if !patchable(path) {
                out.push(Violation {
                    path: path.into(),
                    reason: "outside the patchable paths (recipe/src/**.rs, recipe/recipe.toml, recipe/RATIONALE.md)"
                        .into(),
                });
            }
            let mode = file.mode();
            if !matches!(mode, git2::FileMode::Blob | git2::FileMode::Unreadable) {
                out.push(Violation { path: path.into(), reason: format!("only plain files may change, not {mode:?}") });
            }
        }
        if delta.flags().is_binary() {
            let path = delta
                .new_file()
                .path()
                .or(delta.old_file().path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push(Violation { path, reason: "binary content is not allowed".into() });
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist() {
        for ok in ["recipe/src/lib.rs", "recipe/src/model/attn.rs", "recipe/recipe.toml", "recipe/RATIONALE.md"] {
            assert!(patchable(ok), "{ok}");
        }
        for locked in [
            "recipe/Cargo.toml",
            "recipe/build.rs",
            "trainer/src/train.rs",
            "Cargo.lock",
            "recipe/src/../../trainer/src/x.rs",
            "recipe/src/data.bin",
            "trainer/configs/micro.toml",
            ".cargo/config.toml",
        ] {
            assert!(!patchable(locked), "{locked}");
        }
    }

    fn diff(text: &str) -> git2::Diff<'static> {
        git2::Diff::from_buffer(text.as_bytes()).unwrap()
    }

    #[test]
    fn patches_outside_the_allowlist_or_of_odd_files_are_named() {
        let harness = "diff --git a/trainer/src/eval.rs b/trainer/src/eval.rs\n--- a/trainer/src/eval.rs\n+++ b/trainer/src/eval.rs\n@@ -1 +1 @@\n-a\n+b\n";
        let v = check_patch(&diff(harness));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "trainer/src/eval.rs");
        let link = "diff --git a/recipe/src/x.rs b/recipe/src/x.rs\nnew file mode 120000\n--- /dev/null\n+++ b/recipe/src/x.rs\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n";
        let v = check_patch(&diff(link));
        assert!(v.iter().any(|v| v.reason.contains("plain files")), "{v:?}");
        let fine = "diff --git a/recipe/recipe.toml b/recipe/recipe.toml\n--- a/recipe/recipe.toml\n+++ b/recipe/recipe.toml\n@@ -1 +1 @@\n-a\n+b\n";
        assert!(check_patch(&diff(fine)).is_empty());
    }
}
