//! The whole corpus as a dataset agents can learn from: every submission with its
//! bundle facts and every verdict, negative results included.
//!
//! - `jsonl`: one submission per line (verdicts and bundle nested).
//! - `sqlite`: the tables themselves (submissions, verdicts, bundles, kings,
//!   noise_floors), JSON columns as text, ready for `sqlite3` or pandas.
//! - `parquet`: one flat row per submission (its latest verdict's numbers in
//!   columns, every verdict as a JSON column), snappy-compressed row groups of
//!   10,000, for pandas, polars or DuckDB.
//!
//! Rows are streamed from PostgreSQL, and the file appears only when complete
//! (written beside it, then renamed), so an interrupted export leaves nothing.

use anyhow::{bail, Context, Result};
use futures_util::TryStreamExt;
use sqlx::PgPool;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Sqlite,
    Parquet,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub submissions: u64,
    pub verdicts: u64,
}

/// One submission as a JSON object: its columns (without the search index), its
/// bundle and its verdicts, oldest first.
const SUBMISSION_JSON: &str = "
    SELECT (to_jsonb(s) - 'search') || jsonb_build_object(
        'bundle', (SELECT to_jsonb(b) FROM bundles b WHERE b.digest = s.bundle_digest),
        'verdicts', COALESCE((SELECT jsonb_agg(to_jsonb(v) - 'submission_id' - 'id' ORDER BY v.judged_at, v.id)
                              FROM verdicts v WHERE v.submission_id = s.id), '[]'::jsonb))
    FROM submissions s ORDER BY s.judged_at, s.id";

pub async fn export(pool: &PgPool, format: Format, out: &Path) -> Result<Exported> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let partial = tempfile::Builder::new().prefix(".karpa-export-").tempfile_in(dir)?;
    let counts = match format {
        Format::Jsonl => jsonl(pool, partial.as_file()).await?,
        Format::Sqlite => sqlite(pool, partial.path()).await?,
        Format::Parquet => parquet(pool, partial.as_file().try_clone()?).await?,
    };
    partial.persist(out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(counts)
}

async fn jsonl(pool: &PgPool, file: &std::fs::File) -> Result<Exported> {
    let mut w = std::io::BufWriter::new(file);
    let mut rows = sqlx::query_scalar::<_, serde_json::Value>(SUBMISSION_JSON).fetch(pool);
    let mut counts = Exported { submissions: 0, verdicts: 0 };
    while let Some(row) = rows.try_next().await? {
        counts.submissions += 1;
        counts.verdicts += row["verdicts"].as_array().map_or(0, |v| v.len() as u64);
        serde_json::to_writer(&mut w, &row)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    file.sync_all()?;
    Ok(counts)
}

/// The tables copied to SQLite, and their columns (PostgreSQL names and types).
const TABLES: [(&str, &[(&str, &str)]); 5] = [
    (
        "submissions",
        &[
            ("id", "TEXT PRIMARY KEY"),
            ("repo", "TEXT"),
            ("forge", "TEXT"),
            ("pr", "INTEGER"),
            ("head_sha", "TEXT"),
            ("bundle_digest", "TEXT"),
            ("hotkey", "TEXT"),
            ("github_login", "TEXT"),
            ("king_tag", "TEXT"),
            ("king_commit", "TEXT"),
            ("config", "TEXT"),
            ("title", "TEXT"),
            ("rationale", "TEXT"),
            ("diff", "TEXT"),
            ("class", "TEXT"),
            ("challenger_bpb", "REAL"),
            ("gain", "REAL"),
            ("findings_text", "TEXT"),
            ("submitted_at", "TEXT"),
            ("judged_at", "TEXT"),
        ],
    ),
    (
        "verdicts",
        &[
            ("submission_id", "TEXT"),
            ("judged_king", "TEXT"),
            ("class", "TEXT"),
            ("summary", "TEXT"),
            ("challenger_bpb", "REAL"),
            ("king_mean", "REAL"),
            ("sigma", "REAL"),
            ("n", "INTEGER"),
            ("gain", "REAL"),
            ("threshold", "REAL"),
            ("confirmation_mean", "REAL"),
            ("findings", "TEXT"),
            ("stages", "TEXT"),
            ("judge_version", "TEXT"),
            ("verdict", "TEXT"),
            ("judged_at", "TEXT"),
        ],
    ),
    (
        "bundles",
        &[
            ("digest", "TEXT PRIMARY KEY"),
            ("locator", "TEXT"),
            ("size_bytes", "INTEGER"),
            ("config", "TEXT"),
            ("seed", "INTEGER"),
            ("harness_digest", "TEXT"),
            ("tier", "TEXT"),
            ("sealed_at", "TEXT"),
            ("manifest", "TEXT"),
            ("train_curve", "TEXT"),
            ("val_curve", "TEXT"),
        ],
    ),
    (
        "kings",
        &[
            ("repo", "TEXT"),
            ("tag", "TEXT"),
            ("commit_sha", "TEXT"),
            ("pr", "INTEGER"),
            ("bundle_digest", "TEXT"),
            ("hidden_bpb", "REAL"),
            ("mean_bpb", "REAL"),
            ("sigma", "REAL"),
            ("runs", "INTEGER"),
            ("crowned_by", "TEXT"),
            ("submission_id", "TEXT"),
            ("crowned_at", "TEXT"),
        ],
    ),
    (
        "noise_floors",
        &[
            ("repo", "TEXT"),
            ("king_tag", "TEXT"),
            ("config", "TEXT"),
            ("mean_bpb", "REAL"),
            ("sigma", "REAL"),
            ("n", "INTEGER"),
            ("measured_at", "TEXT"),
        ],
    ),
];

async fn sqlite(pool: &PgPool, path: &Path) -> Result<Exported> {
    use sqlx::{ConnectOptions, Connection};
    let opts = sqlx_sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true);
    let mut db = opts.connect().await.with_context(|| format!("cannot create {}", path.display()))?;
    let mut counts = Exported { submissions: 0, verdicts: 0 };
    sqlx::query("BEGIN").execute(&mut db).await?;
    for (table, columns) in TABLES {
        let defs: Vec<String> = columns.iter().map(|(c, t)| format!("{c} {t}")).collect();
        sqlx::query(&format!("CREATE TABLE {table} ({})", defs.join(", "))).execute(&mut db).await?;
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            (1..=names.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
        );
        let select = format!("SELECT to_jsonb(t) FROM {table} t");
        let mut rows = sqlx::query_scalar::<_, serde_json::Value>(&select).fetch(pool);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            let mut q = sqlx::query::<sqlx_sqlite::Sqlite>(&insert);
            for name in &names {
                q = match &row[name] {
                    serde_json::Value::Null => q.bind(None::<String>),
                    serde_json::Value::String(s) => q.bind(s.clone()),
                    serde_json::Value::Bool(b) => q.bind(*b),
                    serde_json::Value::Number(x) if x.is_i64() => q.bind(x.as_i64()),
                    serde_json::Value::Number(x) => q.bind(x.as_f64()),
                    other => q.bind(other.to_string()),
                };
            }
            q.execute(&mut db).await?;
            n += 1;
        }
        match table {
            "submissions" => counts.submissions = n,
            "verdicts" => counts.verdicts = n,
            _ => {}
        }
    }
    sqlx::query("CREATE INDEX verdicts_by_submission ON verdicts (submission_id)").execute(&mut db).await?;
    sqlx::query("COMMIT").execute(&mut db).await?;
    db.close().await?;
    Ok(counts)
}

/// The Parquet columns: a submission's own, then its verdicts and bundle as JSON.
const PARQUET_COLUMNS: [(&str, Kind); 22] = [
    ("id", Kind::Text),
    ("repo", Kind::Text),
    ("forge", Kind::Text),
    ("pr", Kind::Int),
    ("head_sha", Kind::Text),
    ("bundle_digest", Kind::Text),
    ("hotkey", Kind::Text),
    ("github_login", Kind::Text),
    ("king_tag", Kind::Text),
    ("king_commit", Kind::Text),
    ("config", Kind::Text),
    ("title", Kind::Text),
    ("rationale", Kind::Text),
    ("diff", Kind::Text),
    ("class", Kind::Text),
    ("challenger_bpb", Kind::Real),
    ("gain", Kind::Real),
    ("findings_text", Kind::Text),
    ("submitted_at", Kind::Text),
    ("judged_at", Kind::Text),
    ("verdicts", Kind::Json),
    ("bundle", Kind::Json),
];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Real,
    /// Any JSON value, written as its text.
    Json,
}

const ROW_GROUP: usize = 10_000;

async fn parquet(pool: &PgPool, file: std::fs::File) -> Result<Exported> {
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let fields: Vec<String> = PARQUET_COLUMNS
        .iter()
        .map(|(name, kind)| match kind {
            Kind::Int => format!("OPTIONAL INT64 {name};"),
            Kind::Real => format!("OPTIONAL DOUBLE {name};"),
            Kind::Text | Kind::Json => format!("OPTIONAL BYTE_ARRAY {name} (UTF8);"),
        })
        .collect();
    let schema =
        parquet::schema::parser::parse_message_type(&format!("message submission {{ {} }}", fields.join(" ")))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = SerializedFileWriter::new(std::io::BufWriter::new(file), schema.into(), props.into())?;
    let mut rows = sqlx::query_scalar::<_, serde_json::Value>(SUBMISSION_JSON).fetch(pool);
    let mut counts = Exported { submissions: 0, verdicts: 0 };
    let mut batch = Vec::with_capacity(ROW_GROUP);
    loop {
        let row = rows.try_next().await?;
        let done = row.is_none();
        if let Some(row) = row {
            counts.submissions += 1;
            counts.verdicts += row["verdicts"].as_array().map_or(0, |v| v.len() as u64);
            batch.push(row);
        }
        if batch.len() == ROW_GROUP || (done && !batch.is_empty()) {
            row_group(&mut writer, &batch)?;
            batch.clear();
        }
        if done {
            break;
        }
    }
    writer.close()?;
    Ok(counts)
}

fn row_group<W: Write + Send>(
    writer: &mut parquet::file::writer::SerializedFileWriter<W>,
    rows: &[serde_json::Value],
) -> Result<()> {
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    let mut group = writer.next_row_group()?;
    let mut columns = PARQUET_COLUMNS.iter();
    while let Some(mut column) = group.next_column()? {
        let (name, kind) = columns.next().context("more Parquet columns than the schema names")?;
        let cells = rows.iter().map(|r| &r[*name]);
        // Definition level 1: a value; 0: null.
        let defs: Vec<i16> = cells.clone().map(|v| i16::from(!v.is_null())).collect();
        match (column.untyped(), kind) {
            (ColumnWriter::Int64ColumnWriter(w), Kind::Int) => {
                let values: Vec<i64> = cells.filter_map(|v| v.as_i64()).collect();
                w.write_batch(&values, Some(&defs), None)?;
            }
            (ColumnWriter::DoubleColumnWriter(w), Kind::Real) => {
                let values: Vec<f64> = cells.filter_map(|v| v.as_f64()).collect();
                w.write_batch(&values, Some(&defs), None)?;
            }
            (ColumnWriter::ByteArrayColumnWriter(w), Kind::Text | Kind::Json) => {
                let text = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let values: Vec<ByteArray> =
                    cells.filter(|v| !v.is_null()).map(|v| ByteArray::from(text(v).into_bytes())).collect();
                w.write_batch(&values, Some(&defs), None)?;
            }
            _ => bail!("the Parquet column {name} does not have the type its schema gives"),
        }
        column.close()?;
    }
    group.close()?;
    Ok(())
}
