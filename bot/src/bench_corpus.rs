//! `karpa bench-corpus`: search latency over a realistic corpus. Seeds N
//! submissions with bulk COPY (rationales, diffs and findings written from an
//! ML vocabulary; verdict classes, miners, kings and dates in realistic
//! proportions), then times the corpus's own search (`corpus::query::search`,
//! page and capped count, as the API runs it) over a fixed query set, next to a
//! baseline without the index (ILIKE over the rationale). Prints a table, then
//! `p99_ms: N` last.

use crate::corpus::query::{search, SearchParams};
use anyhow::Result;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, env = "KARPA_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Timed rounds over the query set (after one warm-up round).
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
}

/// splitmix64: a fixed, seedable stream, so every run seeds the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// Zipf-ish: low indices far more often (a few popular ideas, a long tail).
    fn skewed<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        let u = (self.below(1 << 20) as f64 + 0.5) / (1u64 << 20) as f64;
        xs[((u * u * u) * xs.len() as f64) as usize]
    }
}

const IDEAS: [&str; 40] = [
    "warmup",
    "learning rate",
    "cosine schedule",
    "weight decay",
    "batch size",
    "gradient clipping",
    "tied embeddings",
    "rotary embeddings",
    "SwiGLU",
    "RMSNorm",
    "QK norm",
    "label smoothing",
    "dropout",
    "Muon optimizer",
    "Adam beta2",
    "linear decay",
    "z-loss",
    "init scale",
    "depth",
    "width",
    "head count",
    "context length",
    "value residual",
    "logit softcap",
    "embedding scale",
    "learning rate warmup length",
    "attention temperature",
    "ALiBi",
    "multi-query attention",
    "grouped-query attention",
    "parallel blocks",
    "pre-norm",
    "post-norm",
    "sliding window attention",
    "gradient accumulation",
    "EMA of weights",
    "cooldown",
    "tokenizer vocabulary",
    "data order",
    "sequence packing",
];
const VERBS: [&str; 8] = ["Raise", "Lower", "Replace", "Add", "Remove", "Tune", "Schedule", "Try"];
const WHY: [&str; 10] = [
    "the loss curve plateaus early and the tail is flat",
    "small models at this budget are under-trained, so more optimizer steps should help",
    "the last king spent too long in warmup",
    "the gradient norm spikes in the first hundred steps",
    "validation loss diverges from training loss after the midpoint",
    "the literature reports a consistent gain at this scale",
    "the attention entropy collapses in the deeper layers",
    "the embedding norm keeps growing through training",
    "it trades a little throughput for a steadier optimizer",
    "an ablation on the public split suggested a small but steady gain",
];
const KEYS: [&str; 12] = [
    "lr",
    "warmup_frac",
    "weight_decay",
    "batch_rows",
    "n_layer",
    "n_head",
    "d_model",
    "min_lr",
    "beta2",
    "grad_clip",
    "dropout",
    "tie_embeddings",
];
const FINDINGS: [&str; 8] = [
    "scan.unsafe: unsafe code in the recipe",
    "base.stale: the PR is not based on the current king",
    "attestation.signature: the DSSE signature does not verify",
    "replay.mismatch: the replayed segment differs from the log",
    "decision.duplicate: the same normalised diff was judged before",
    "plausibility.loss: the logged loss is below the data's entropy bound",
    "file.digest: a file's digest does not match the manifest",
    "intake.locator: the PR body names no bundle",
];
const CLASSES: [(&str, u64); 6] =
    [("crowned", 5), ("meaningful-failure", 100), ("failure", 500), ("rejected", 300), ("stale", 70), ("error", 25)];

fn class(r: &mut Rng) -> &'static str {
    let mut x = r.below(1000);
    for (c, w) in CLASSES {
        if x < w {
            return c;
        }
        x -= w;
    }
    "failure"
}

const SYLLABLES: [&str; 24] = [
    "ka", "ro", "mi", "zen", "tor", "vex", "lu", "na", "qi", "sol", "dar", "bel", "fin", "gro", "hal", "ix", "jo",
    "kep", "lar", "mox", "nu", "ost", "pyr", "quu",
];

/// Miner `m`'s GitHub login: two or three syllables and maybe digits.
pub fn login(m: u64) -> String {
    let mut r = Rng(m.wrapping_mul(0x9e37_79b9) ^ 0x5eed);
    let mut s: String = (0..2 + r.below(2)).map(|_| r.pick(&SYLLABLES)).collect();
    if r.below(3) == 0 {
        s.push_str(&r.below(100).to_string());
    }
    s.push_str(&format!("-{m}"));
    s
}

/// Miner `m`'s hotkey: an SS58-shaped string (48 base58 characters from 5).
pub fn hotkey(m: u64) -> String {
    const B58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut r = Rng(m ^ 0x004b_4559);
    std::iter::once('5').chain((0..47).map(|_| B58[r.below(58) as usize] as char)).collect()
}

/// COPY's text format: backslash, tab and newlines escaped.
fn field(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\t');
}

fn row(r: &mut Rng, i: u64, out: &mut String) {
    let idea = r.skewed(&IDEAS);
    let title = format!("{} {} ({})", r.pick(&VERBS), idea, r.pick(&KEYS));
    let rationale = format!(
        "# {title}\n\n{} because {}. We change {} and keep the rest of the recipe as the king has it. \
         {} interacts with {}; the run on the public split moved val bpb by {:.3}.\n",
        idea,
        r.pick(&WHY),
        r.pick(&KEYS),
        r.skewed(&IDEAS),
        r.skewed(&IDEAS),
        (r.below(2000) as f64 - 1000.0) / 1e5,
    );
    let key = r.pick(&KEYS);
    let diff = format!(
        "--- a/recipe/recipe.toml\n+++ b/recipe/recipe.toml\n@@ -{} +{} @@\n-{key} = {}\n+{key} = {}\n",
        r.below(40),
        r.below(40),
        r.below(100),
        r.below(100)
    );
    let class = class(r);
    let miner = r.below(2000);
    let king = r.below(60);
    let evaluated = matches!(class, "crowned" | "meaningful-failure" | "failure");
    let findings = if evaluated { String::new() } else { format!("{}\n", r.pick(&FINDINGS)) };
    let bpb = 2.45 - king as f64 * 0.001 + (r.below(1000) as f64 - 500.0) / 1e4;
    let id = format!("ks-{:016x}", r.next() ^ i);
    for v in [id.as_str(), "bench/recipe", "github"] {
        field(out, v);
    }
    field(out, &(i + 1).to_string());
    field(out, &format!("{:040x}", r.next() as u128 * 0x1_0000_0001));
    field(out, &hotkey(miner));
    field(out, &login(miner));
    field(out, &format!("recipe-v0.{}.{}", king / 10, king % 10));
    for v in ["tiny", title.as_str(), rationale.as_str(), diff.as_str(), class] {
        field(out, v);
    }
    // COPY's NULL is a bare \N (not escaped like text).
    match evaluated {
        true => out.push_str(&format!("{bpb:.5}\t{:.5}\t", (r.below(1000) as f64 - 700.0) / 1e4)),
        false => out.push_str("\\N\t\\N\t"),
    }
    field(out, &findings);
    // Submitted at the start of the corpus's year; judged in order over it.
    out.push_str(&format!("2025-11-26 00:00:00+00\t{}\n", seconds_to_ts(i)));
}

fn seconds_to_ts(i: u64) -> String {
    // 1M rows over 365 days: about one every 31.5 s.
    let secs = i * 31 + i / 2;
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil(20_418 + d as i64); // 2025-11-26 is day 20418 since 1970-01-01
    format!("{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}+00", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The fixed query set: (what, query string as the API takes it).
const QUERIES: [(&str, &str); 17] = [
    ("common word", "q=warmup"),
    ("two words", "q=learning+rate"),
    ("phrase", "q=%22gradient+norm+spikes%22"),
    ("rare word", "q=ALiBi"),
    ("word, not word", "q=embeddings+-rotary"),
    ("or", "q=softcap+or+z-loss"),
    ("finding text", "q=replayed+segment"),
    ("diff key", "q=beta2"),
    ("word + class", "q=warmup&class=crowned"),
    ("word + miner", "q=schedule&miner=@42"),
    ("word + king + dates", "q=dropout&king=recipe-v0.3.7&since=2026-03-01&until=2026-09-30"),
    ("word, relevance", "q=weight+decay&sort=relevance"),
    ("word, page 5", "q=depth&page=5"),
    ("no words: newest", ""),
    ("no words: class", "class=meaningful-failure"),
    ("no words: hotkey", "miner=%231999"),
    ("no words: login part", "miner=@77"),
];

/// A query string as the API parses it; `miner=@m` stands for part of miner
/// m's login and `miner=#m` for miner m's whole hotkey.
fn parse(query: &str) -> Result<SearchParams> {
    let uri: axum::http::Uri = format!("/?{query}").parse()?;
    let axum::extract::Query(mut p) = axum::extract::Query::<SearchParams>::try_from_uri(&uri)?;
    p.miner = p.miner.map(|v| match (v.strip_prefix('@'), v.strip_prefix('#')) {
        (Some(m), _) => login(m.parse().unwrap_or(0)).chars().take(5).collect(),
        (_, Some(m)) => hotkey(m.parse().unwrap_or(0)),
        _ => v,
    });
    Ok(p)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn run(args: &BenchArgs) -> Result<bool> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pool = crate::db::connect(&args.database_url).await?;
        let have: i64 = sqlx::query_scalar("SELECT count(*) FROM submissions").fetch_one(&pool).await?;
        if have < args.rows as i64 {
            let t = Instant::now();
            seed(&pool, have as u64, args.rows).await?;
            eprintln!("seeded {} submissions in {:.0} s", args.rows - have as u64, t.elapsed().as_secs_f64());
            let t = Instant::now();
            sqlx::query("VACUUM ANALYZE submissions").execute(&pool).await?;
            eprintln!("vacuum analyze: {:.0} s", t.elapsed().as_secs_f64());
        }
        let size: String =
            sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('submissions'))").fetch_one(&pool).await?;
        println!("corpus: {} submissions, {size} with indexes; {} timed rounds\n", args.rows, args.rounds);
        println!("| {:<22} | {:>9} | {:>8} | {:>8} |", "query", "matches", "p50 ms", "p99 ms");
        println!("|{:-<24}|{:->11}|{:->10}|{:->10}|", "", "", "", "");
        let mut all = Vec::new();
        for (what, q) in QUERIES {
            let s = parse(q)?.check().map_err(anyhow::Error::msg)?;
            let page = search(&pool, &s).await?; // warm-up
            let mut times = Vec::new();
            for _ in 0..args.rounds {
                let t = Instant::now();
                search(&pool, &s).await?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            all.extend(&times);
            times.sort_by(f64::total_cmp);
            let total = format!("{}{}", if page.total_is_lower_bound { ">" } else { "" }, page.total);
            println!(
                "| {what:<22} | {total:>9} | {:>8.2} | {:>8.2} |",
                percentile(&times, 0.5),
                percentile(&times, 0.99)
            );
        }
        // The baseline: the same words found without the index, by ILIKE over the rationale.
        let mut base = Vec::new();
        for word in ["warmup", "ALiBi", "beta2"] {
            let t = Instant::now();
            let sql = "SELECT id FROM submissions WHERE rationale ILIKE $1 ORDER BY judged_at DESC LIMIT 21";
            sqlx::query(sql).bind(format!("%{word}%")).fetch_all(&pool).await?;
            sqlx::query("SELECT count(*) FROM (SELECT 1 FROM submissions WHERE rationale ILIKE $1 LIMIT 10001) c")
                .bind(format!("%{word}%"))
                .fetch_one(&pool)
                .await?;
            base.push(t.elapsed().as_secs_f64() * 1e3);
        }
        base.sort_by(f64::total_cmp);
        println!(
            "| {:<22} | {:>9} | {:>8.2} | {:>8.2} |",
            "baseline: ILIKE, no index",
            "-",
            percentile(&base, 0.5),
            percentile(&base, 0.99)
        );
        all.sort_by(f64::total_cmp);
        println!("\nall {} searches: p50 {:.2} ms", all.len(), percentile(&all, 0.5));
        println!("p99_ms: {:.2}", percentile(&all, 0.99));
        Ok(true)
    })
}

/// Rows `from..to`, in COPY batches of 20,000.
async fn seed(pool: &sqlx::PgPool, from: u64, to: u64) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let mut rng = Rng(from ^ 0x004b_4152_5041);
    let mut i = from;
    while i < to {
        let end = (i + 20_000).min(to);
        let mut copy = conn
            .copy_in_raw(
                "COPY submissions (id, repo, forge, pr, head_sha, hotkey, github_login, king_tag, config, title, \
                 rationale, diff, class, challenger_bpb, gain, findings_text, submitted_at, judged_at) FROM STDIN",
            )
            .await?;
        let mut buf = String::with_capacity(20_000 * 900);
        for j in i..end {
            row(&mut rng, j, &mut buf);
        }
        copy.send(buf.as_bytes()).await?;
        copy.finish().await?;
        i = end;
    }
    sqlx::query(
        "INSERT INTO miners (hotkey, github_login, submissions, crowns, best_gain, last_seen)
         SELECT hotkey, max(github_login), count(*), count(*) FILTER (WHERE class = 'crowned'), max(gain), max(judged_at)
         FROM submissions WHERE hotkey IS NOT NULL GROUP BY hotkey
         ON CONFLICT (hotkey) DO UPDATE SET submissions = EXCLUDED.submissions, crowns = EXCLUDED.crowns,
             best_gain = EXCLUDED.best_gain, last_seen = EXCLUDED.last_seen",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
