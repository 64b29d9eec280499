//! Corpus shards: Parquet files of one row per source file, readable unchanged by pyarrow,
//! polars and DuckDB. Shards are named like Hugging Face datasets' (`train-00000-of-00004.parquet`)
//! and written atomically; the manifest, written last, is what marks a corpus complete.

use crate::error::{DataError, Result};
use crate::lang::Lang;
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One kept source file, as stored in a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub path: String,
    pub lang: Lang,
    /// SPDX expression, or `NOASSERTION` when nothing was detected.
    pub license: String,
    pub content: String,
    pub n_bytes: u64,
    pub n_lines: u32,
    pub max_line_len: u32,
    pub alnum_fraction: f32,
    pub n_ast_nodes: u64,
    pub ast_depth: u32,
    pub parse_error_fraction: f32,
    /// xxh3-128 of the content, hex: the exact-dedup key and the split key.
    pub content_hash: String,
    /// The `--source` this file came from.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

pub fn schema() -> SchemaRef {
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        utf8("path"),
        utf8("lang"),
        utf8("license"),
        utf8("content"),
        Field::new("n_bytes", DataType::UInt64, false),
        Field::new("n_lines", DataType::UInt32, false),
        Field::new("max_line_len", DataType::UInt32, false),
        Field::new("alnum_fraction", DataType::Float32, false),
        Field::new("n_ast_nodes", DataType::UInt64, false),
        Field::new("ast_depth", DataType::UInt32, false),
        Field::new("parse_error_fraction", DataType::Float32, false),
        utf8("content_hash"),
        utf8("source"),
    ]))
}

fn to_batch(records: &[Record]) -> RecordBatch {
    let s = |f: fn(&Record) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(records.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        s(|r| &r.path),
        s(|r| r.lang.name()),
        s(|r| &r.license),
        s(|r| &r.content),
        Arc::new(UInt64Array::from_iter_values(
            records.iter().map(|r| r.n_bytes),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.n_lines),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.max_line_len),
        )),
        Arc::new(Float32Array::from_iter_values(
            records.iter().map(|r| r.alnum_fraction),
        )),
        Arc::new(UInt64Array::from_iter_values(
            records.iter().map(|r| r.n_ast_nodes),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.ast_depth),
        )),
        Arc::new(Float32Array::from_iter_values(
            records.iter().map(|r| r.parse_error_fraction),
        )),
        s(|r| &r.content_hash),
        s(|r| &r.source),
    ];
    RecordBatch::try_new(schema(), cols).expect("columns match the schema")
}

/// Shard file name for shard `i` of `n` in `split`.
pub fn shard_name(split: Split, i: usize, n: usize) -> String {
    format!("{}-{:05}-of-{:05}.parquet", split.name(), i, n)
}

/// Write `records` as one Parquet shard at `path`, atomically. Snappy keeps shards readable by
/// every Parquet reader while staying fast to write; row groups of 1,024 files keep memory flat.
pub fn write_shard(path: &Path, records: &[Record]) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1024))
        .set_created_by(format!("anvil {}", env!("CARGO_PKG_VERSION")))
        .build();
    let tmp = crate::atomic::tmp_path(path);
    let res = (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let file = File::create(&tmp)?;
        let mut w = ArrowWriter::try_new(file, schema(), Some(props))?;
        for chunk in records.chunks(1024) {
            w.write(&to_batch(chunk))?;
        }
        let file = w.into_inner()?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DataError::parquet(path, e)
    })
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            DataError::parquet(
                path,
                format!("not an Anvil corpus shard: column `{name}` missing or of the wrong type"),
            )
        })
}

/// Read every record of one shard. A file that is not Parquet, or Parquet of another schema,
/// is an error naming the file and what is wrong.
pub fn read_shard(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(1024).build())
        .map_err(|e| DataError::parquet(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| DataError::parquet(path, e))?;
        let path_c = column::<StringArray>(&batch, "path", path)?;
        let lang_c = column::<StringArray>(&batch, "lang", path)?;
        let lic = column::<StringArray>(&batch, "license", path)?;
        let content = column::<StringArray>(&batch, "content", path)?;
        let n_bytes = column::<UInt64Array>(&batch, "n_bytes", path)?;
        let n_lines = column::<UInt32Array>(&batch, "n_lines", path)?;
        let max_line = column::<UInt32Array>(&batch, "max_line_len", path)?;
        let alnum = column::<Float32Array>(&batch, "alnum_fraction", path)?;
        let nodes = column::<UInt64Array>(&batch, "n_ast_nodes", path)?;
        let depth = column::<UInt32Array>(&batch, "ast_depth", path)?;
        let perr = column::<Float32Array>(&batch, "parse_error_fraction", path)?;
        let hash = column::<StringArray>(&batch, "content_hash", path)?;
        let source = column::<StringArray>(&batch, "source", path)?;
        for i in 0..batch.num_rows() {
            let lang = Lang::from_name(lang_c.value(i)).ok_or_else(|| {
                DataError::parquet(path, format!("row {i}: unknown lang `{}`", lang_c.value(i)))
            })?;
            out.push(Record {
                path: path_c.value(i).to_string(),
                lang,
                license: lic.value(i).to_string(),
                content: content.value(i).to_string(),
                n_bytes: n_bytes.value(i),
                n_lines: n_lines.value(i),
                max_line_len: max_line.value(i),
                alnum_fraction: alnum.value(i),
                n_ast_nodes: nodes.value(i),
                ast_depth: depth.value(i),
                parse_error_fraction: perr.value(i),
                content_hash: hash.value(i).to_string(),
                source: source.value(i).to_string(),
            });
        }
    }
    Ok(out)
}

/// The shards of `split` in a prepared corpus directory, in order. A corpus without a
/// manifest is incomplete (an interrupted run) and refused.
pub fn list_shards(corpus_dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    if !corpus_dir.join("manifest.json").is_file() {
        return Err(DataError::invalid(
            corpus_dir,
            "no manifest.json: not a prepared corpus, or its `anvil data prepare` did not finish",
        ));
    }
    let prefix = format!("{}-", split.name());
    let mut shards: Vec<PathBuf> = std::fs::read_dir(corpus_dir)
        .map_err(|e| DataError::io(corpus_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".parquet"))
        })
        .collect();
    shards.sort();
    Ok(shards)
}
