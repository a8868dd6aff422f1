//! Reading a corpus: plain-text folders, JSONL and Parquet files with a `text`
//! column (FineWeb-Edu's form). Every document is visited in one fixed order
//! (inputs as given, folders walked in sorted order, lines and rows in file order),
//! so the same inputs always give the same outputs.

use anyhow::{bail, Context, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Which reader a file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Jsonl,
    Parquet,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "txt" | "md" => Some(Format::Text),
        "jsonl" => Some(Format::Jsonl),
        "parquet" => Some(Format::Parquet),
        _ => None,
    }
}

/// The files of a corpus, in reading order.
pub fn list_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).with_context(|| format!("cannot read corpus input {}", input.display()))?;
        if meta.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            if files.len() == before {
                bail!("corpus folder {} holds no .txt, .md, .jsonl or .parquet file", input.display());
            }
        } else if format_of(input).is_some() {
            files.push(input.clone());
        } else {
            bail!("corpus file {} is not .txt, .md, .jsonl or .parquet", input.display());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if format_of(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// Calls `f` with the text of every non-empty document of `files`, in order.
pub fn for_each_document(files: &[PathBuf], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    for file in files {
        let res = match format_of(file) {
            Some(Format::Text) => read_text(file, &mut f),
            Some(Format::Jsonl) => read_jsonl(file, &mut f),
            Some(Format::Parquet) => read_parquet(file, &mut f),
            None => unreachable!("list_files keeps only known formats"),
        };
        res.with_context(|| format!("corpus file {}", file.display()))?;
    }
    Ok(())
}

fn emit(text: &str, f: &mut impl FnMut(&str) -> Result<()>) -> Result<()> {
    if text.trim().is_empty() {
        return Ok(());
    }
    f(text)
}

/// A text file is one document, without any Project Gutenberg header or footer.
fn read_text(file: &Path, f: &mut impl FnMut(&str) -> Result<()>) -> Result<()> {
    let bytes = std::fs::read(file)?;
    let text = String::from_utf8(bytes).context("not valid UTF-8")?;
    emit(strip_gutenberg(&text), f)
}

/// Cuts the licence boilerplate Project Gutenberg puts around a work.
pub fn strip_gutenberg(text: &str) -> &str {
    let mut body = text;
    if let Some(start) = body.find("*** START OF") {
        body = body[start..].split_once('\n').map_or("", |(_, rest)| rest);
    }
    if let Some(end) = body.find("*** END OF") {
        body = &body[..end];
    }
    body
}

fn read_jsonl(file: &Path, f: &mut impl FnMut(&str) -> Result<()>) -> Result<()> {
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", i + 1))?;
        let Some(text) = value.get("text").and_then(|t| t.as_str()) else {
            bail!("line {}: no string field \"text\"", i + 1);
        };
        emit(text, f)?;
    }
    Ok(())
}

fn read_parquet(file: &Path, f: &mut impl FnMut(&str) -> Result<()>) -> Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(std::fs::File::open(file)?).context("not a readable Parquet file")?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let Some(col) = schema.columns().iter().position(|c| c.name() == "text") else {
        bail!("no column named \"text\"");
    };
    let projection = schema.root_schema().get_fields()[col].clone();
    let projection =
        parquet::schema::types::Type::group_type_builder("schema").with_fields(vec![projection]).build()?;
    for (i, row) in reader.get_row_iter(Some(projection))?.enumerate() {
        let row = row.with_context(|| format!("row {i}"))?;
        match row.get_column_iter().next() {
            Some((_, Field::Str(text))) => emit(text, f)?,
            Some((_, Field::Null)) => {}
            other => bail!("row {i}: column \"text\" is not a string: {other:?}"),
        }
    }
    Ok(())
}
