//! Current master data: the latest record per outlet and per SKU from the changelogs
//! ingest writes to `master/outlets/` and `master/skus/` (greatest
//! (`kafka_timestamp_ms`, `source_offset`) wins; `deleted = true` removes the id). The
//! aggregator joins them into features; the publisher reads SKU names from them.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use serde_json::Value;

use crate::schema::from_parquet;
use crate::{Error, Result, Storage};

/// A current master record: its text fields by column name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Text columns (`name`, `region`, `category`, …) that are not null.
    pub fields: BTreeMap<String, String>,
    /// The `attributes` JSON object, parsed (empty when absent or not an object).
    pub attributes: serde_json::Map<String, Value>,
    /// The `attributes` column as stored.
    pub attributes_json: Option<String>,
}

/// The current records of one master table, by id.
pub type Current = HashMap<String, Record>;

/// Reads the changelog under `dir` (`master/outlets/` or `master/skus/`) and keeps the
/// latest record per id; `id_column` names the id.
pub async fn current(storage: &Storage, dir: &str, id_column: &str) -> Result<Current> {
    // id → ((timestamp, offset), record or None when deleted)
    let mut latest: HashMap<String, ((i64, i64), Option<Record>)> = HashMap::new();
    for obj in storage.list(dir).await? {
        if !obj.path.ends_with(".parquet") {
            continue;
        }
        let data = storage.get(&obj.path).await?.ok_or_else(|| Error::Table {
            file: obj.path.clone(),
            reason: "vanished while reading".to_owned(),
        })?;
        for b in from_parquet(data)? {
            read_batch(&b, &obj.path, id_column, &mut latest)?;
        }
    }
    Ok(latest
        .into_iter()
        .filter_map(|(id, (_, r))| r.map(|r| (id, r)))
        .collect())
}

fn read_batch(
    b: &RecordBatch,
    path: &str,
    id_column: &str,
    latest: &mut HashMap<String, ((i64, i64), Option<Record>)>,
) -> Result<()> {
    let col = |name: &str| {
        b.column_by_name(name).ok_or_else(|| Error::Table {
            file: path.to_owned(),
            reason: format!("column `{name}` is missing"),
        })
    };
    let ids = col(id_column)?.as_string::<i32>();
    let ts = col("kafka_timestamp_ms")?.as_primitive::<Int64Type>();
    let offsets = col("source_offset")?.as_primitive::<Int64Type>();
    let deleted = col("deleted")?.as_boolean();
    let schema = b.schema();
    let text: Vec<(&str, &ArrayRef)> = schema
        .fields()
        .iter()
        .zip(b.columns())
        .filter(|(f, _)| {
            f.data_type() == &DataType::Utf8 && f.name() != id_column && f.name() != "source_topic"
        })
        .map(|(f, c)| (f.name().as_str(), c))
        .collect();
    for i in 0..b.num_rows() {
        let key = (ts.value(i), offsets.value(i));
        let id = ids.value(i);
        if latest.get(id).is_some_and(|(k, _)| *k > key) {
            continue;
        }
        let record = (!deleted.value(i)).then(|| {
            let mut r = Record::default();
            for (name, c) in &text {
                let c = c.as_string::<i32>();
                if c.is_valid(i) {
                    let v = c.value(i).to_owned();
                    if *name == "attributes" {
                        if let Ok(Value::Object(m)) = serde_json::from_str(&v) {
                            r.attributes = m;
                        }
                        r.attributes_json = Some(v);
                    } else {
                        r.fields.insert((*name).to_owned(), v);
                    }
                }
            }
            r
        });
        latest.insert(id.to_owned(), (key, record));
    }
    Ok(())
}

/// An attribute value as text (strings as they are, numbers and booleans as JSON).
pub fn attribute_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The current name of every SKU that has one (`master/skus/`).
pub async fn sku_names(storage: &Storage) -> Result<HashMap<String, String>> {
    Ok(current(storage, super::layout::MASTER_SKUS, "sku_id")
        .await?
        .into_iter()
        .filter_map(|(id, mut r)| {
            r.fields
                .remove("name")
                .filter(|n| !n.trim().is_empty())
                .map(|n| (id, n))
        })
        .collect())
}
