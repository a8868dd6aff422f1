//! The model card (`README.md` in the Hugging Face format): YAML front matter
//! with a `model-index`, then the lineage, the training, how to generate and
//! reproduce, and the limits. It is rendered from `config.json` alone, so
//! `karpa model verify` re-renders it and any edited number shows as a line
//! that differs.

use super::model::{ModelConfig, Provenance};
use std::fmt::Write;

/// 1812480 → "1.81M".
fn millions(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// A YAML string: JSON's quoting is a valid YAML double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

pub fn render(c: &ModelConfig) -> String {
    let mut out = String::new();
    front_matter(&mut out, c);
    body(&mut out, c);
    out
}

fn front_matter(out: &mut String, c: &ModelConfig) {
    let s = &c.scores;
    let mut metrics = match &c.provenance {
        Provenance::Bundle => vec![
            ("bpb", "hidden bpb (the validator's held-out split)".to_string(), s.hidden_bpb),
            ("bpb", "public val bpb (end of training)".to_string(), s.val_bpb),
        ],
        Provenance::Reference { val_bpb, hidden_bpb } => {
            let mut m = vec![("bpb", "public val bpb of this re-training (end of training)".to_string(), *val_bpb)];
            m.extend(hidden_bpb.map(|h| ("bpb", "hidden bpb of this re-training".to_string(), h)));
            m
        }
    };
    metrics.push(("bpb-sigma", format!("noise floor σ of {} (n = {})", s.king, s.floor_n), s.sigma));
    let _ = writeln!(out, "---");
    let _ = writeln!(out, "license: other\nlicense_name: mit-or-apache-2.0");
    let _ = writeln!(out, "language:\n- en\nlibrary_name: karpa\npipeline_tag: text-generation");
    let _ = writeln!(out, "tags:\n- karpa\n- gpt\n- {}\n- {}", q(&c.config), q(&c.tag));
    let _ = writeln!(out, "datasets:\n- {}", q(&c.dataset));
    let _ = writeln!(out, "model-index:\n- name: {}\n  results:\n  - task:\n      type: text-generation", q(&c.name));
    let _ = writeln!(out, "    dataset:\n      type: {}\n      name: {}", q(&c.config), q(&c.dataset));
    let _ = writeln!(out, "    metrics:");
    for (kind, name, value) in metrics {
        let _ = writeln!(out, "    - type: {kind}\n      name: {}\n      value: {value}", q(&name));
    }
    let _ = writeln!(
        out,
        "    source:\n      name: crown note of {}\n      url: {}",
        q(&c.tag),
        q(&format!("refs/notes/karpa@{}", c.commit))
    );
    let _ = writeln!(out, "---\n");
}

fn body(out: &mut String, c: &ModelConfig) {
    let (s, t) = (&c.scores, &c.training);
    let _ = writeln!(out, "# {}\n", c.name);
    let _ = writeln!(
        out,
        "A GPT of {} parameters trained by the Karpa recipe at `{}` (commit `{}`) on protocol config `{}`: \
         vocabulary {}, context {} tokens.",
        millions(c.params),
        c.tag,
        &c.commit[..12],
        c.config,
        c.vocab_size,
        c.seq_len,
    );
    let bundle = match &c.provenance {
        Provenance::Bundle => {
            let _ = writeln!(out, "These are the weights of the release's own bundle, the checkpoint crowned when it beat `{}` by {:.4} bpb on a validator's hidden split.\n", s.king, s.gain);
            "these weights"
        }
        Provenance::Reference { .. } => {
            let _ = writeln!(out, "These weights are a re-training of the tag by `karpa reference` (the config's seed, the trainer's own run), not the crowned bundle's checkpoint; the release was crowned when its bundle beat `{}` by {:.4} bpb on a validator's hidden split. The re-training's numbers are its exporter's, and `karpa reproduce` re-makes them.\n", s.king, s.gain);
            "the crowned bundle"
        }
    };
    let _ = writeln!(out, "## Scores\n\n| | bpb |\n| --- | ---: |");
    if let Provenance::Reference { val_bpb, hidden_bpb } = &c.provenance {
        let _ = writeln!(out, "| public val split, end of this re-training | {val_bpb:.4} |");
        if let Some(h) = hidden_bpb {
            let _ = writeln!(out, "| hidden split, this re-training's last checkpoint | {h:.4} |");
        }
    }
    let _ = writeln!(out, "| hidden split, the validator's score of {bundle} | {:.4} |", s.hidden_bpb);
    for (i, b) in s.confirmation_bpb.iter().enumerate() {
        let _ = writeln!(out, "| hidden split, the validator's own training run {} | {b:.4} |", i + 1);
    }
    let _ = writeln!(out, "| public val split, end of {bundle}'s training | {:.4} |", s.val_bpb);
    let _ = writeln!(out, "| {} (the king it beat), mean of its noise floor | {:.4} |", s.king, s.king_bpb);
    let _ = writeln!(out, "| noise floor σ of {} over {} seeds | {:.4} |\n", s.king, s.floor_n, s.sigma);
    let _ = writeln!(out, "## Lineage\n\n| release | hidden bpb | gain | bundle |\n| --- | ---: | ---: | --- |");
    for r in &c.lineage {
        let bpb = r.hidden_bpb.map_or("—".into(), |b| format!("{b:.4}"));
        let gain = r.gain.map_or("genesis".into(), |g| format!("{g:+.4}"));
        let bundle = r.bundle_digest.as_deref().map_or("—".into(), |d| format!("`{}…`", &d[..16.min(d.len())]));
        let _ = writeln!(out, "| {} | {bpb} | {gain} | {bundle} |", r.tag);
    }
    let _ = writeln!(out, "\n## Training\n");
    let h100 = t.h100_equivalence.map_or(String::new(), |h| format!(" ({h:.4} H100-equivalents)"));
    let _ = writeln!(
        out,
        "{} tokens in {} steps (seed {}), {:.3e} FLOPs (6·N·D), {:.1} s on {}{h100}, \
         from {} to {}. The hyperparameters are `recipe.toml`'s `[{}]` table, in `config.json`.\n",
        t.tokens, t.steps, t.seed, t.flops, t.elapsed_s, t.device, t.started_at, t.finished_at, c.config
    );
    let _ = writeln!(out, "## Generate\n\n```sh");
    let _ = writeln!(out, "git clone <recipe repository> && cd <recipe repository> && git checkout {}", c.tag);
    let _ = writeln!(out, "cargo build --release -p karpa-trainer");
    let _ = writeln!(
        out,
        "target/release/karpa-train generate --config {} --data <this folder> --checkpoint <this folder>/model.safetensors \\\n    --prompt \"ROMEO:\" --tokens 200 --temperature 0.8 --top-k 40 --seed 1\n```\n",
        c.config
    );
    let _ = writeln!(out, "The weights need the recipe's own code: this is not a `transformers` architecture.\n");
    let _ = writeln!(
        out,
        "## Reproduce\n\n```sh\nkarpa reproduce --tag {} --config {} --data <prepared {} data>\n```\n",
        c.tag, c.config, c.config
    );
    let _ = writeln!(
        out,
        "It trains the tag with seed {} and sets the result beside these numbers, judged by σ.\n",
        t.seed
    );
    let _ = writeln!(out, "## Limits\n");
    let _ = writeln!(
        out,
        "A small model trained on {} tokens of one corpus ({}): it continues text in that corpus's style and \
         knows nothing else. bpb is measured on held-out text of the same corpus only. No safety tuning.\n",
        t.tokens, c.dataset
    );
    let _ = writeln!(out, "## Provenance\n\nEvery number above is in `config.json`, derived from these:\n");
    let digests = [
        ("crown note (RFC 8785 form)", c.crown_note_sha256.as_str()),
        ("bundle", c.bundle_digest.as_str()),
        ("weights (`model.safetensors`)", c.weights.sha256.as_str()),
        ("harness", c.harness_digest.as_str()),
        ("protocol config", c.protocol_config_sha256.as_str()),
        ("data manifest", c.data_manifest_sha256.as_str()),
        ("tokenizer", c.tokenizer_sha256.as_str()),
    ];
    for (what, d) in digests {
        let _ = writeln!(out, "- {what}: `{d}`");
    }
    if !c.signed_by.is_empty() {
        let _ = writeln!(out, "- signed by validator {}", c.signed_by.join(", "));
    }
    let _ = writeln!(out, "\n`karpa model verify <this folder> --repo <clone>` re-checks all of it offline.");
}
