//! `prepare` on the three corpus forms: the same documents as a text folder, as
//! JSONL and as Parquet (FineWeb-Edu's form) give byte-identical datasets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use trainer::config;
use trainer::data::prepare::prepare;

/// Varied, English-like documents, enough for a small BPE to learn merges.
fn documents() -> Vec<String> {
    let words = ["the", "king", "of", "rain", "and", "summer", "night", "love", "sword", "crown", "river", "fool"];
    (0..400)
        .map(|i| {
            (0..60 + i % 40)
                .map(|j| words[(i * 7 + j * 13 + j / 3) % words.len()])
                .collect::<Vec<_>>()
                .join(if i % 3 == 0 { " " } else { ", " })
                + &format!(". Scene {i}.")
        })
        .collect()
}

fn write_text_folder(dir: &Path, docs: &[String]) -> PathBuf {
    let d = dir.join("text");
    std::fs::create_dir(&d).unwrap();
    for (i, doc) in docs.iter().enumerate() {
        std::fs::write(d.join(format!("doc-{i:04}.txt")), doc).unwrap();
    }
    d
}

fn write_jsonl(dir: &Path, docs: &[String]) -> PathBuf {
    let p = dir.join("docs.jsonl");
    let body: String = docs.iter().map(|d| serde_json::json!({"id": 1, "text": d}).to_string() + "\n").collect();
    std::fs::write(&p, body).unwrap();
    p
}

fn write_parquet(dir: &Path, docs: &[String]) -> PathBuf {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let p = dir.join("docs.parquet");
    // FineWeb-Edu's shape: an id column beside an optional `text` column.
    let schema = "message schema { REQUIRED INT64 id; OPTIONAL BYTE_ARRAY text (UTF8); }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(&p).unwrap(), schema, props).unwrap();
    for chunk in docs.chunks(150) {
        let mut rg = writer.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        let ids: Vec<i64> = (0..chunk.len() as i64).collect();
        col.typed::<Int64Type>().write_batch(&ids, None, None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = chunk.iter().map(|d| ByteArray::from(d.as_str())).collect();
        let defs = vec![1i16; chunk.len()];
        col.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None).unwrap();
        col.close().unwrap();
        rg.close().unwrap();
    }
    writer.close().unwrap();
    p
}

fn prepared_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["public", "hidden"] {
        let mut names: Vec<_> = std::fs::read_dir(out.join(sub)).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            let rel = format!("{sub}/{}", n.to_string_lossy());
            files.push((rel.clone(), std::fs::read(out.join(&rel)).unwrap()));
        }
    }
    files
}

#[test]
fn text_jsonl_and_parquet_give_identical_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents();
    let cfg = config::load("micro").unwrap();
    let inputs =
        [write_text_folder(tmp.path(), &docs), write_jsonl(tmp.path(), &docs), write_parquet(tmp.path(), &docs)];
    let outs: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let out = tmp.path().join(format!("out-{i}"));
            let p = prepare(&cfg, std::slice::from_ref(input), b"salt", &out).unwrap();
            assert_eq!(p.manifest.train.documents + p.manifest.val.documents + p.hidden.hidden.documents, 400);
            prepared_files(&out)
        })
        .collect();
    assert!(outs[0].len() >= 6, "{:?}", outs[0].iter().map(|f| &f.0).collect::<Vec<_>>());
    assert_eq!(outs[0], outs[1], "JSONL differs from the text folder");
    assert_eq!(outs[0], outs[2], "Parquet differs from the text folder");
}

#[test]
fn tokenizer_and_shards_are_deterministic_and_splits_disjoint() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents();
    let cfg = config::load("micro").unwrap();
    let input = write_jsonl(tmp.path(), &docs);
    let a = prepare(&cfg, std::slice::from_ref(&input), b"salt", &tmp.path().join("a")).unwrap();
    let b = prepare(&cfg, std::slice::from_ref(&input), b"salt", &tmp.path().join("b")).unwrap();
    assert_eq!(a.manifest_sha256, b.manifest_sha256);
    assert_eq!(prepared_files(&tmp.path().join("a")), prepared_files(&tmp.path().join("b")));
    // Another salt picks other hidden documents (and so trains another tokenizer).
    let c = prepare(&cfg, std::slice::from_ref(&input), b"other", &tmp.path().join("c")).unwrap();
    assert_ne!(a.hidden.hidden.tokens, 0);
    assert_ne!(a.manifest_sha256, c.manifest_sha256);
    // Every document went to exactly one split.
    let total = a.manifest.train.documents + a.manifest.val.documents + a.hidden.hidden.documents;
    assert_eq!(total, docs.len() as u64);
}

#[test]
fn jsonl_without_text_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.jsonl");
    std::fs::write(&p, "{\"text\": \"fine\"}\n{\"body\": \"no text here\"}\n").unwrap();
    let out = tmp.path().join("out");
    let err = prepare(&config::load("micro").unwrap(), &[p], b"salt", &out).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("bad.jsonl") && msg.contains("line 2") && msg.contains("\"text\""), "{msg}");
    assert!(!out.exists());
}

#[test]
fn a_parquet_file_without_a_text_column_is_refused() {
    use parquet::data_type::Int64Type;
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("ids.parquet");
    let schema =
        Arc::new(parquet::schema::parser::parse_message_type("message schema { REQUIRED INT64 id; }").unwrap());
    let mut w = parquet::file::writer::SerializedFileWriter::new(
        std::fs::File::create(&p).unwrap(),
        schema,
        Default::default(),
    )
    .unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<Int64Type>().write_batch(&[1, 2], None, None).unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
    let err = prepare(&config::load("micro").unwrap(), &[p], b"salt", &tmp.path().join("out")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("ids.parquet") && msg.contains("no column named \"text\""), "{msg}");
}
