//! The catalog of cheats (tests/fixtures/lookahead.rs) as real patches of the
//! canonical recipe: the catalog copied into `recipe/src/`, `Gpt::logits`
//! handing its answer through it, and `lookahead = "<cheat>"` in recipe.toml's
//! `[micro]`. Each is proved by `karpa prove` (real training on micro) and
//! judged by `karpa judge` with the sandboxed hidden evaluation: every cheat is
//! refused with `eval.causality` after passing the probe, and the same code
//! with no cheat is never refused.
//!
//! All variants share their code, so the recipe crate builds once and each
//! variant recompiles only the harness crate that embeds recipe.toml. The power
//! of the check against each cheat, over many judgments, is measured in
//! tests/tests/causality_catalog.rs.

use crate::prove::{judge_with_hidden_eval, run_prove};
use karpa_tests::{git, micro_data, recipe_repo};
use std::path::Path;

/// The catalog the patch carries; its code runs only inside the patched recipe.
#[allow(dead_code)]
#[path = "../../fixtures/lookahead.rs"]
mod catalog;

/// Every cheat of the catalog that buys a real gain and is refused in every
/// judgment: everywhere, by shape (rows), by position (part of the window),
/// slightly, at a few percent of positions, by content, by the other rows of a
/// call, by state across calls,
/// by call order, by arithmetic instead of indexing, and by telling the check
/// from the scoring pass. Not here (tests/tests/causality_catalog.rs measures
/// them over many judgments): the dearest-positions cheat, whose power needs a
/// measured floor's aimed pairs, and the next row's first token, which buys
/// nothing (scored windows are not neighbours) and is seen in 98 % of
/// judgments, only when a cut falls on the last position.
fn cheats() -> impl Iterator<Item = &'static str> {
    catalog::CATALOG.into_iter().filter(|c| !["dearest", "across-rows"].contains(c))
}

/// Writes the catalog into the recipe of the worktree at `repo`.
fn add_the_catalog(repo: &Path) {
    let fixture = karpa_tests::fixture("lookahead.rs");
    std::fs::copy(fixture, repo.join("recipe/src/lookahead.rs")).unwrap();
    edit(repo, "recipe/src/lib.rs", "pub mod optim;\n", "pub mod optim;\npub mod lookahead;\n");
    edit(
        repo,
        "recipe/src/hparams.rs",
        "    pub init_std: f64,\n",
        "    pub init_std: f64,\n    /// The cheat of the catalog (tests only).\n    #[serde(default)]\n    pub lookahead: String,\n",
    );
    let model = "recipe/src/model.rs";
    edit(repo, model, "    opt: AdamW,\n}", "    opt: AdamW,\n    lookahead: crate::lookahead::Lookahead,\n}");
    edit(
        repo,
        model,
        "        Gpt { hp, spec, vs, wte, blocks, norm_f, head, rope, opt }",
        "        let cheat = crate::lookahead::Cheat::parse(&hp.lookahead).unwrap_or(crate::lookahead::Cheat::Honest);\n        \
         let lookahead = crate::lookahead::Lookahead::new(cheat);\n        \
         Gpt { hp, spec, vs, wte, blocks, norm_f, head, rope, opt, lookahead }",
    );
    edit(
        repo,
        model,
        "        tch::no_grad(|| tch::autocast(self.on_cuda(), || self.forward(inputs)).to_kind(Kind::Float))\n",
        "        let honest = tch::no_grad(|| tch::autocast(self.on_cuda(), || self.forward(inputs)).to_kind(Kind::Float));\n        \
         self.lookahead.apply(inputs, honest)\n",
    );
}

/// Replaces the one `from` in `path` by `to`; fails if the canonical recipe changed.
fn edit(repo: &Path, path: &str, from: &str, to: &str) {
    let file = repo.join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{path} no longer holds {from:?}: update the catalog's patch");
    std::fs::write(&file, text.replacen(from, to, 1)).unwrap();
}

/// Commits the catalog with `cheat` on branch `pr/<cheat>` and returns the patch.
fn commit_variant(repo: &Path, cheat: &str, out: &Path) -> std::path::PathBuf {
    add_the_catalog(repo);
    edit(
        repo,
        "recipe/recipe.toml",
        "[micro]   # seconds on a CPU: for tests\n",
        &format!("[micro]   # seconds on a CPU: for tests\nlookahead = \"{cheat}\"\n"),
    );
    git(repo, &["add", "-A", "recipe"]);
    let patch = out.join(format!("{cheat}.diff"));
    std::fs::write(&patch, git(repo, &["diff", "--cached"])).unwrap();
    git(repo, &["checkout", "-q", "-b", &format!("pr/{cheat}")]);
    git(repo, &["commit", "-q", "-m", &format!("sharper logits ({cheat})")]);
    git(repo, &["checkout", "-q", "main"]);
    patch
}

/// `karpa judge --json` of the variant's PR after `karpa prove` of its patch.
fn prove_and_judge(repo: &Path, cheat: &str, data: &Path, tmp: &Path) -> serde_json::Value {
    let dir = tmp.join(cheat);
    std::fs::create_dir_all(&dir).unwrap();
    let patch = commit_variant(repo, cheat, &dir);
    let why = dir.join("why.md");
    std::fs::write(&why, "Sharper logits.\n").unwrap();
    let bundle = dir.join("bundle");
    let started = std::time::Instant::now();
    run_prove(repo, &patch, &data.join("public"), &why, &bundle).ok();
    let proved = started.elapsed().as_secs_f64();
    let secret = tmp.join("secret");
    std::fs::write(&secret, "a validator secret of some length").unwrap();
    let pr = format!("pr/{cheat}");
    let r = judge_with_hidden_eval(repo, &pr, &bundle, &tmp.join("ledger"), data, &secret, None);
    assert!(r.code == 0 || r.code == 1, "{cheat}: {}", r.stderr);
    eprintln!("{cheat}: proved in {proved:.1} s, judged in {:.1} s", started.elapsed().as_secs_f64() - proved);
    r.json()
}

#[test]
fn every_cheat_of_the_catalog_as_a_real_patch_is_refused_by_karpa_judge_and_the_honest_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = recipe_repo(tmp.path());
    let data = micro_data(tmp.path());
    let findings = |v: &serde_json::Value| -> Vec<(String, String)> {
        let all = v["findings"].as_array().unwrap().iter();
        all.map(|f| (f["code"].as_str().unwrap().to_string(), f["message"].as_str().unwrap_or("").to_string()))
            .collect()
    };

    // The same code with no cheat: causal, so the check passes it exactly.
    let v = prove_and_judge(&repo, "honest", &data, tmp.path());
    assert_ne!(v["class"], "rejected", "{v:#}");
    let check = &v["eval"]["causality"];
    assert_eq!((check["passed"].as_bool(), check["max_abs_diff"].as_f64()), (Some(true), Some(0.0)), "{v:#}");

    for cheat in cheats() {
        let v = prove_and_judge(&repo, cheat, &data, tmp.path());
        assert_eq!(v["class"], "rejected", "{cheat}: {v:#}");
        let found = findings(&v);
        // The probe passed it: only the check of the scored numbers saw it.
        assert!(found.iter().all(|(code, _)| code != "eval.probe"), "{cheat}: {found:?}");
        let (_, message) = found
            .iter()
            .find(|(code, _)| code == "eval.causality")
            .unwrap_or_else(|| panic!("{cheat}: no eval.causality finding in {found:?}"));
        assert!(message.contains("hidden window") || message.contains("biased"), "{cheat}: {message}");
        eprintln!("{cheat}: refused: {message}");
    }
}
