//! The causality check against a catalog of cheating recipes, every class of the
//! threat model in issue 13, on `micro` with the real corpus: the harness's
//! scoring pass (`trainer::eval::evaluate`), the validator's secret pairs
//! (`karpa_bot::judge::causality::choose_pairs`), the re-scoring
//! (`trainer::causality`) by a second, fresh instance of the recipe (as the
//! second process would build it: no state shared with the scoring pass), and
//! the judge's comparison (`proof::causality::compare`). Honest recipes of other
//! shapes pass over 200 judgments' worth of checks.
//!
//! The same path through `karpa judge` and the sandbox, with real patches, is in
//! tests/tests/e2e/prove.rs.

use proof::causality::{compare, CausalityReport, Tolerance};
use recipe::{ModelSpec, Recipe, RecipeError, StepCtx, StepStats};
use std::cell::RefCell;
use tch::{Device, Kind, Tensor};
use trainer::data::dataset::{Dataset, Windows};

/// The ways a recipe might look at what it is scored on.
#[derive(Debug, Clone, Copy)]
enum Cheat {
    /// A bonus on the next token's logit at every position but the probe's cuts.
    Everywhere,
    /// The same, only when a call has more rows than the probe sends.
    BigBatches,
    /// Only in the second half of each window.
    SecondHalf,
    /// A nudge sized like a real improvement, everywhere.
    Nudge,
    /// A lot, at a few percent of positions (those whose next token is ≡ 0 mod 16).
    Rare,
    /// Only for some contents: windows whose first token is even.
    SomeContents,
    /// Each row's last position reads the next row's first token.
    AcrossRows,
    /// State across calls: a unigram cache of every token seen in earlier calls.
    Cache,
    /// The lookahead through arithmetic instead of indexing: embeddings shifted by a matmul.
    ShiftMatrix,
    /// Tells the check from the scoring pass and is honest in it: the check
    /// re-scores some windows more than once, the scoring pass never, so a window
    /// prefix seen twice means "checked" and the recipe stops cheating for good.
    HonestWhenChecked,
    /// The most concentrated cheat: only at the dearest 0.4 % of positions (its
    /// own honest loss on the true next token above a fixed bar, so the same
    /// positions in any call), where a cheat buys most per position touched.
    /// Uniform cuts see it in about half the judgments; the pairs aimed where the
    /// recipe beats the king see it.
    Dearest,
}

const CHEATS: [Cheat; 11] = [
    Cheat::Everywhere,
    Cheat::BigBatches,
    Cheat::SecondHalf,
    Cheat::Nudge,
    Cheat::Rare,
    Cheat::SomeContents,
    Cheat::AcrossRows,
    Cheat::Cache,
    Cheat::ShiftMatrix,
    Cheat::HonestWhenChecked,
    Cheat::Dearest,
];

/// The canonical recipe with one cheat in `logits`; honest in `train_step`.
struct Cheating {
    honest: Box<dyn Recipe>,
    cheat: Cheat,
    cache: RefCell<Option<Tensor>>,
    /// HonestWhenChecked: window prefixes seen, and whether one came twice.
    seen: RefCell<(std::collections::HashSet<Vec<i64>>, bool)>,
    /// Dearest: the honest loss above which it cheats, in nats.
    dear_above: f64,
}

impl Cheating {
    /// A `[B, T, V]` mask of the next token at each position (zero at the last).
    fn next_token(x: &Tensor, vocab: i64) -> Tensor {
        let (b, t) = x.size2().unwrap();
        let next = x.narrow(1, 1, t - 1);
        let hot = next.one_hot(vocab).to_kind(Kind::Float);
        Tensor::cat(&[hot, Tensor::zeros([b, 1, vocab], (Kind::Float, Device::Cpu))], 1)
    }

    fn positions(t: i64, keep: impl Fn(i64) -> bool) -> Tensor {
        let v: Vec<f32> = (0..t).map(|p| if keep(p) { 1.0 } else { 0.0 }).collect();
        Tensor::from_slice(&v).view([1, t, 1])
    }
}

impl Recipe for Cheating {
    fn batch_rows(&self) -> i64 {
        self.honest.batch_rows()
    }
    fn train_step(&mut self, x: &Tensor, y: &Tensor, ctx: &StepCtx) -> StepStats {
        self.honest.train_step(x, y, ctx)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        self.honest.state()
    }
    fn load_state(&mut self, s: &[(String, Tensor)]) -> Result<(), RecipeError> {
        self.honest.load_state(s)
    }
    fn num_params(&self) -> i64 {
        self.honest.num_params()
    }

    fn logits(&self, x: &Tensor) -> Tensor {
        let logits = self.honest.logits(x);
        let (b, t, v) = logits.size3().unwrap();
        let probe_cuts = [0, t / 4, t / 2, t - 2];
        let not_probed = Cheating::positions(t, |p| !probe_cuts.contains(&p));
        let next = Cheating::next_token(x, v);
        let bonus = match self.cheat {
            Cheat::Everywhere => next * not_probed * 4.0,
            Cheat::BigBatches if b > 2 => next * not_probed * 4.0,
            Cheat::BigBatches => return logits,
            Cheat::SecondHalf => next * Cheating::positions(t, |p| p >= t / 2) * 4.0,
            Cheat::Nudge => next * not_probed * 0.3,
            Cheat::Rare => {
                let rare = x.narrow(1, 1, t - 1).remainder(16).eq(0).to_kind(Kind::Float);
                let rare = Tensor::cat(&[rare, Tensor::zeros([b, 1], (Kind::Float, Device::Cpu))], 1);
                next * rare.unsqueeze(-1) * not_probed * 6.0
            }
            Cheat::SomeContents => {
                let even = x.narrow(1, 0, 1).remainder(2).eq(0).to_kind(Kind::Float).view([b, 1, 1]);
                next * even * not_probed * 4.0
            }
            Cheat::AcrossRows => {
                let mut bonus = Tensor::zeros([b, t, v], (Kind::Float, Device::Cpu));
                if b > 1 {
                    let first = x.narrow(1, 0, 1).narrow(0, 1, b - 1).one_hot(v).to_kind(Kind::Float);
                    bonus =
                        Tensor::cat(&[Tensor::zeros([b - 1, t - 1, v], (Kind::Float, Device::Cpu)), first * 4.0], 1);
                    bonus = Tensor::cat(&[bonus, Tensor::zeros([1, t, v], (Kind::Float, Device::Cpu))], 0);
                }
                bonus
            }
            Cheat::Cache => {
                let seen = x.one_hot(v).to_kind(Kind::Float).sum_dim_intlist(&[0i64, 1][..], false, Kind::Float);
                let mut cache = self.cache.borrow_mut();
                let before = cache.as_ref().map(|c| c.shallow_clone());
                *cache = Some(match &before {
                    Some(c) => c + &seen,
                    None => seen,
                });
                match before {
                    Some(c) => (c + 1.0).log().view([1, 1, v]).expand([b, t, v], false) * 0.5,
                    None => return logits,
                }
            }
            Cheat::HonestWhenChecked => {
                let mut seen = self.seen.borrow_mut();
                for r in 0..b {
                    let prefix = Vec::<i64>::try_from(x.get(r).narrow(0, 0, 4)).unwrap();
                    seen.1 |= !seen.0.insert(prefix);
                }
                if seen.1 {
                    return logits;
                }
                next * not_probed * 4.0
            }
            Cheat::Dearest => {
                let next_id = Tensor::cat(&[x.narrow(1, 1, t - 1), x.narrow(1, t - 1, 1)], 1);
                let nats =
                    -logits.log_softmax(-1, Kind::Float).gather(2, &next_id.unsqueeze(-1), false).squeeze_dim(-1);
                let dear = nats.gt(self.dear_above).to_kind(Kind::Float).unsqueeze(-1);
                next * dear * 8.0
            }
            Cheat::ShiftMatrix => {
                // next = S·onehot(x) with S the shift-by-one matrix: no indexing of the inputs.
                let shift = Tensor::eye(t, (Kind::Float, Device::Cpu)).roll([-1], [0]);
                let shift = shift.narrow(0, 0, t - 1);
                let hot = x.one_hot(v).to_kind(Kind::Float);
                let shifted = shift.matmul(&hot);
                let shifted = Tensor::cat(&[shifted, Tensor::zeros([b, 1, v], (Kind::Float, Device::Cpu))], 1);
                shifted * not_probed * 4.0
            }
        };
        logits + bonus
    }
}

/// micro's data, prepared once per test process.
fn data() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    karpa_tests::run(
        &karpa_tests::binary("karpa-train"),
        &[
            &"prepare",
            &"--config",
            &"micro",
            &"--input",
            &karpa_tests::corpus(),
            &"--salt-file",
            &karpa_tests::demo_salt_file(),
            &"--out",
            &out,
        ],
    )
    .ok();
    let cfg = trainer::config::load("micro").unwrap();
    let data = Dataset::open(&out.join("public"), &cfg, false).unwrap();
    (dir, data)
}

/// The canonical recipe for micro with `changes` applied to its table of recipe.toml.
fn honest(changes: &[(&str, &str)]) -> Box<dyn Recipe> {
    let mut text = trainer::config::RECIPE_TOML.to_string();
    let micro = text.find("[micro]").unwrap();
    for (key, value) in changes {
        let at = micro + text[micro..].find(&format!("\n{key} = ")).unwrap() + 1;
        let end = at + text[at..].find('\n').unwrap();
        text.replace_range(at..end, &format!("{key} = {value}"));
    }
    tch::manual_seed(1337);
    let spec = ModelSpec { vocab_size: 512, seq_len: 64, device: Device::Cpu };
    recipe::build(&text, "micro", spec).unwrap()
}

struct Judged {
    bpb: f64,
    report: CausalityReport,
    nats: Vec<f32>,
}

/// The king's per-token hidden nats, for aiming: the canonical recipe from another seed.
fn king_nats(data: &Dataset) -> Vec<f32> {
    let cfg = trainer::config::load("micro").unwrap();
    let tokens = data.hidden(&data.dir.parent().unwrap().join("hidden")).unwrap();
    let hidden = Windows::new(&tokens, cfg.seq_len).unwrap();
    tch::manual_seed(4242);
    let spec = ModelSpec { vocab_size: 512, seq_len: 64, device: Device::Cpu };
    let king = recipe::build(trainer::config::RECIPE_TOML, "micro", spec).unwrap();
    let token_bytes = data.token_bytes().unwrap();
    trainer::eval::evaluate(king.as_ref(), &hidden, cfg.eval_tokens, cfg.seq_len, &token_bytes, Device::Cpu)
        .unwrap()
        .nats
}

/// One judgment's scoring pass and causality check of `make()`'s recipe (built
/// twice: the scoring process and the checking process share nothing), with a
/// quarter of the pairs aimed by `king` when given.
/// The honest loss above which lie the dearest 0.4 % of the hidden positions.
fn dearest_bar(king: &[f32]) -> f64 {
    let mut sorted: Vec<f32> = king.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted[sorted.len() * 4 / 1000] as f64
}

fn cheating(cheat: Cheat, dear_above: f64) -> Box<dyn Recipe> {
    Box::new(Cheating { honest: honest(&[]), cheat, cache: RefCell::new(None), seen: Default::default(), dear_above })
}

fn judge(data: &Dataset, make: &dyn Fn() -> Box<dyn Recipe>, keys: &[String], king: Option<&[f32]>) -> Vec<Judged> {
    let cfg = trainer::config::load("micro").unwrap();
    let (hidden, val) = (data.hidden(&data.dir.parent().unwrap().join("hidden")).unwrap(), data.val().unwrap());
    let (hidden, filler) = (Windows::new(&hidden, cfg.seq_len).unwrap(), Windows::new(&val, cfg.seq_len).unwrap());
    let token_bytes = data.token_bytes().unwrap();
    let scoring = make();
    let scored =
        trainer::eval::evaluate(scoring.as_ref(), &hidden, cfg.eval_tokens, cfg.seq_len, &token_bytes, Device::Cpu)
            .unwrap();
    let evaluated = (cfg.eval_tokens / cfg.seq_len as u64) as usize;
    let aim = king.and_then(|k| proof::causality::aim::Aim::new(k, &scored.nats).ok());
    keys.iter()
        .map(|key| {
            let pairs = karpa_bot::judge::causality::choose_pairs(
                b"validator secret",
                key,
                &cfg,
                cfg.causality_rows,
                aim.as_ref(),
            );
            let rows = trainer::causality::prepare_rows(&hidden, &filler, &pairs, evaluated, cfg.seq_len).unwrap();
            let checking = make();
            let per_call = checking.batch_rows() as usize;
            let reference = trainer::causality::rescore(checking.as_ref(), &rows, per_call, 512, Device::Cpu).unwrap();
            let report =
                compare(&scored.nats, cfg.seq_len as usize, &pairs, &reference, Tolerance::for_device(false)).unwrap();
            Judged { bpb: scored.result.bpb, report, nats: scored.nats.clone() }
        })
        .collect()
}

fn keys(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-bundle-{i}")).collect()
}

#[test]
fn every_cheat_of_the_catalog_is_refused_and_honest_recipes_never_are() {
    let (_dir, data) = data();
    let king = king_nats(&data);
    let canonical = judge(&data, &|| honest(&[]), &keys(1, "canonical"), Some(&king)).remove(0);
    let (honest_bpb, bar) = (canonical.bpb, dearest_bar(&canonical.nats));

    for cheat in CHEATS {
        let make = || cheating(cheat, bar);
        let judged = judge(&data, &make, &keys(10, &format!("{cheat:?}")), Some(&king));
        let refused = judged.iter().filter(|j| !j.report.passed).count();
        let gain = honest_bpb - judged[0].bpb;
        match cheat {
            // Evaluated windows are never neighbours, so the next row's first token
            // is not this row's target: the cheat buys nothing, and is still seen
            // whenever a cut falls on the last position (1 − (63/64)^256 ≈ 98 %).
            Cheat::AcrossRows => {
                assert!(gain.abs() < 0.01, "{cheat:?} bought {gain:+.4} bpb");
                assert!(refused >= 8, "{cheat:?}: refused in {refused} of 10 judgments");
            }
            _ => {
                assert!(gain > 0.0, "{cheat:?} must buy something to be a cheat: {gain:+.4} bpb");
                assert_eq!(refused, 10, "{cheat:?} (buys {gain:+.4} bpb) passed some judgments");
            }
        }
        let failed = judged.iter().find(|j| !j.report.passed).unwrap();
        let why = failed.report.explain();
        assert!(why.contains("hidden window") || why.contains("biased"), "{cheat:?}: {why}");
        eprintln!("{cheat:?}: buys {gain:+.4} bpb, refused {refused}/10: {why}");
    }
}

/// The aimed pairs are what sees the concentrated cheat: uniform pairs alone
/// (a floor without per-token nats) miss it in some judgments, aimed ones in none.
#[test]
fn aimed_pairs_see_the_cheat_that_uniform_pairs_miss() {
    let (_dir, data) = data();
    let king = king_nats(&data);
    let bar = dearest_bar(&judge(&data, &|| honest(&[]), &keys(1, "canonical"), None)[0].nats);
    let make = || cheating(Cheat::Dearest, bar);
    let refused = |king: Option<&[f32]>| {
        judge(&data, &make, &keys(20, "dearest"), king).iter().filter(|j| !j.report.passed).count()
    };
    let (uniform, aimed) = (refused(None), refused(Some(&king)));
    eprintln!("Dearest: refused by uniform pairs in {uniform}/20 judgments, with aimed pairs in {aimed}/20");
    assert!(uniform < 20, "uniform pairs alone should miss a 0.4 % cheat sometimes: {uniform}/20");
    assert_eq!(aimed, 20);
}

/// A recipe that is causal by construction but shares nothing with the GPT: each
/// position's logits from its own token and the one before, through a matmul.
struct Bigram {
    emb: Tensor,
    prev: Tensor,
}

impl Recipe for Bigram {
    fn batch_rows(&self) -> i64 {
        5
    }
    fn train_step(&mut self, _: &Tensor, _: &Tensor, _: &StepCtx) -> StepStats {
        unimplemented!("only scored here")
    }
    fn logits(&self, x: &Tensor) -> Tensor {
        let (b, t) = x.size2().unwrap();
        let here = self.emb.index_select(0, &x.view([-1])).view([b, t, -1]);
        let before = Tensor::cat(&[x.narrow(1, 0, 1), x.narrow(1, 0, t - 1)], 1);
        let there = self.prev.index_select(0, &before.view([-1])).view([b, t, -1]);
        (here + there).matmul(&self.emb.tr())
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
    fn load_state(&mut self, _: &[(String, Tensor)]) -> Result<(), RecipeError> {
        Ok(())
    }
    fn num_params(&self) -> i64 {
        0
    }
}

#[test]
fn honest_recipes_pass_two_hundred_judgments_of_checks() {
    let (_dir, data) = data();
    let bigram = || -> Box<dyn Recipe> {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        Box::new(Bigram { emb: Tensor::randn([512, 32], opts), prev: Tensor::randn([512, 32], opts) * 0.5 })
    };
    let variants: Vec<(&str, Box<dyn Fn() -> Box<dyn Recipe>>)> = vec![
        ("canonical", Box::new(|| honest(&[]))),
        ("tie_embeddings", Box::new(|| honest(&[("tie_embeddings", "true")]))),
        ("batch_rows = 3", Box::new(|| honest(&[("batch_rows", "3")]))),
        ("n_layer = 3, d_model = 96", Box::new(|| honest(&[("n_layer", "3"), ("d_model", "96"), ("n_head", "3")]))),
        ("a bigram model", Box::new(bigram)),
    ];
    let king = king_nats(&data);
    let mut worst: f64 = 0.0;
    let mut judgments = 0;
    for (name, make) in &variants {
        for j in judge(&data, make.as_ref(), &keys(40, name), Some(&king)) {
            assert!(j.report.passed, "{name} refused: {}", j.report.explain());
            worst = worst.max(j.report.max_abs_diff);
            judgments += 1;
        }
    }
    assert_eq!(judgments, 200);
    eprintln!("200 honest judgments passed; largest difference {worst:.2e} nats");
}

/// A recipe that answers the check with the wrong shape (here: whenever a call
/// is not full) is the recipe's failure, named, never a pass.
#[test]
fn a_wrong_shape_in_the_check_is_the_recipes_failure() {
    struct Partial(Box<dyn Recipe>);
    impl Recipe for Partial {
        fn batch_rows(&self) -> i64 {
            self.0.batch_rows()
        }
        fn train_step(&mut self, x: &Tensor, y: &Tensor, ctx: &StepCtx) -> StepStats {
            self.0.train_step(x, y, ctx)
        }
        fn logits(&self, x: &Tensor) -> Tensor {
            let l = self.0.logits(x);
            if x.size()[0] == self.batch_rows() {
                l
            } else {
                l.narrow(2, 0, 500)
            }
        }
        fn state(&self) -> Vec<(String, Tensor)> {
            self.0.state()
        }
        fn load_state(&mut self, s: &[(String, Tensor)]) -> Result<(), RecipeError> {
            self.0.load_state(s)
        }
        fn num_params(&self) -> i64 {
            self.0.num_params()
        }
    }
    let (_dir, data) = data();
    let cfg = trainer::config::load("micro").unwrap();
    let (hidden, val) = (data.hidden(&data.dir.parent().unwrap().join("hidden")).unwrap(), data.val().unwrap());
    let (hidden, filler) = (Windows::new(&hidden, cfg.seq_len).unwrap(), Windows::new(&val, cfg.seq_len).unwrap());
    let pairs = karpa_bot::judge::causality::choose_pairs(b"secret", "partial", &cfg, cfg.causality_rows, None);
    let rows = trainer::causality::prepare_rows(&hidden, &filler, &pairs, 128, cfg.seq_len).unwrap();
    let recipe = Partial(honest(&[]));
    let err = trainer::causality::rescore(&recipe, &rows, recipe.batch_rows() as usize, 512, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("expected [") && err.to_string().contains("512] Float"), "{err}");
}
