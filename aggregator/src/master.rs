//! Current master data: the latest record per outlet and per SKU from the changelogs in
//! `master/outlets/` and `master/skus/` (greatest (`kafka_timestamp_ms`,
//! `source_offset`) wins; `deleted = true` removes the id), and the tables the feature
//! queries join: SKU → level value, and outlets with their JSON attributes spread into
//! columns so a segmentation's `filter` can name them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use serde_json::Value;
use spectra_core::config::AttributeType;
use spectra_core::schema::from_parquet;
use spectra_core::Storage;

use crate::Error;

/// The feature an SKU missing from master data counts under.
pub const UNKNOWN: &str = "unknown";

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
pub async fn current(storage: &Storage, dir: &str, id_column: &str) -> Result<Current, Error> {
    // id → ((timestamp, offset), record or None when deleted)
    let mut latest: HashMap<String, ((i64, i64), Option<Record>)> = HashMap::new();
    for obj in storage.list(dir).await? {
        if !obj.path.ends_with(".parquet") {
            continue;
        }
        let data = storage
            .get(&obj.path)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("{} vanished while reading", obj.path)))?;
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
) -> Result<(), Error> {
    let col = |name: &str| {
        b.column_by_name(name)
            .ok_or_else(|| Error::Corrupt(format!("{path}: no column `{name}`")))
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

/// The value of a segmentation's level for a current SKU: `category`, `subcategory`,
/// `brand`, `sku` (the id itself) or `attribute:<name>`; missing values are
/// [`UNKNOWN`].
pub fn level_value(level: &str, sku_id: &str, r: &Record) -> String {
    let v = match level {
        "sku" => Some(sku_id.to_owned()),
        l => match l.strip_prefix("attribute:") {
            Some(a) => r.attributes.get(a).and_then(attribute_text),
            None => r.fields.get(l).cloned(),
        },
    };
    v.filter(|s| !s.is_empty())
        .unwrap_or_else(|| UNKNOWN.to_owned())
}

/// `skus(sku_id, feature)` for the current SKUs at `level`.
pub fn sku_features(skus: &Current, level: &str) -> Result<RecordBatch, Error> {
    let mut ids = StringBuilder::new();
    let mut features = StringBuilder::new();
    let mut sorted: Vec<(&String, &Record)> = skus.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (id, r) in sorted {
        ids.append_value(id);
        features.append_value(level_value(level, id, r));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("sku_id", DataType::Utf8, false),
        Field::new("feature", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(ids.finish()), Arc::new(features.finish())],
    )?)
}

/// Columns every outlet row has; attribute keys with these names are not spread.
const OUTLET_FIELDS: [&str; 5] = ["outlet_id", "name", "region", "channel", "attributes"];

/// `outlets(outlet_id, name, region, channel, attributes, <attribute keys…>)`: the
/// current outlets with every attribute key as a column, so a filter like `channel =
/// 'traditional' AND size = 'M'` or `employees > 5` reads naturally. A key's type is
/// the one `declared` for it (`number`: values that are not numbers are null; `text`:
/// numbers as their JSON text), else `Float64` when all its values are numbers and
/// text otherwise. Names in `referenced` (the columns a filter names) that no outlet has
/// yet are all-null columns (text unless declared), so such a filter selects nothing
/// instead of failing.
pub fn outlet_table(
    outlets: &Current,
    declared: &BTreeMap<String, AttributeType>,
    referenced: &BTreeSet<String>,
) -> Result<RecordBatch, Error> {
    let mut sorted: Vec<(&String, &Record)> = outlets.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let present: BTreeSet<&str> = sorted
        .iter()
        .flat_map(|(_, r)| r.attributes.keys().map(String::as_str))
        .collect();
    let keys: BTreeSet<&str> = present
        .iter()
        .copied()
        .chain(declared.keys().map(String::as_str))
        .chain(referenced.iter().map(String::as_str))
        .filter(|k| !OUTLET_FIELDS.contains(k))
        .collect();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let mut text = |name: &str, get: &dyn Fn(&Record) -> Option<String>, ids: bool| {
        let mut b = StringBuilder::new();
        for (id, r) in &sorted {
            if ids {
                b.append_value(id);
            } else {
                b.append_option(get(r));
            }
        }
        fields.push(Field::new(name, DataType::Utf8, !ids));
        cols.push(Arc::new(b.finish()) as ArrayRef);
    };
    text("outlet_id", &|_| None, true);
    for f in ["name", "region", "channel"] {
        text(f, &|r| r.fields.get(f).cloned(), false);
    }
    text("attributes", &|r| r.attributes_json.clone(), false);
    for k in keys {
        let values: Vec<Option<&Value>> = sorted
            .iter()
            .map(|(_, r)| r.attributes.get(k).filter(|v| !v.is_null()))
            .collect();
        let ty = declared.get(k).copied().unwrap_or_else(|| {
            let numbers = values.iter().flatten().all(|v| v.is_number());
            if numbers && present.contains(k) {
                AttributeType::Number
            } else {
                AttributeType::Text
            }
        });
        match ty {
            AttributeType::Number => {
                let mut b = Float64Builder::new();
                for v in &values {
                    b.append_option(v.and_then(|v| match v {
                        Value::String(s) => s.trim().parse::<f64>().ok(),
                        other => other.as_f64(),
                    }));
                }
                fields.push(Field::new(k, DataType::Float64, true));
                cols.push(Arc::new(b.finish()));
            }
            AttributeType::Text => {
                let mut b = StringBuilder::new();
                for v in &values {
                    b.append_option(v.and_then(attribute_text));
                }
                fields.push(Field::new(k, DataType::Utf8, true));
                cols.push(Arc::new(b.finish()));
            }
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &[(&str, &str)], attrs: &str) -> Record {
        Record {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            attributes: match serde_json::from_str(attrs) {
                Ok(Value::Object(m)) => m,
                _ => Default::default(),
            },
            attributes_json: Some(attrs.to_owned()),
        }
    }

    #[test]
    fn level_values_fall_back_to_unknown() {
        let r = rec(
            &[("category", "coffee")],
            r#"{"pack": "1kg", "weight": 1.5}"#,
        );
        assert_eq!(level_value("category", "S1", &r), "coffee");
        assert_eq!(level_value("brand", "S1", &r), UNKNOWN);
        assert_eq!(level_value("sku", "S1", &r), "S1");
        assert_eq!(level_value("attribute:pack", "S1", &r), "1kg");
        assert_eq!(level_value("attribute:weight", "S1", &r), "1.5");
        assert_eq!(level_value("attribute:colour", "S1", &r), UNKNOWN);
    }

    #[test]
    fn outlet_attributes_become_typed_columns() {
        let mut m = Current::new();
        m.insert(
            "O1".into(),
            rec(
                &[("channel", "traditional")],
                r#"{"size": "M", "staff": 3}"#,
            ),
        );
        m.insert(
            "O2".into(),
            rec(
                &[("region", "North")],
                r#"{"staff": 7, "name": "shadowed"}"#,
            ),
        );
        let b = outlet_table(&m, &BTreeMap::new(), &BTreeSet::new()).unwrap();
        let schema = b.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "outlet_id",
                "name",
                "region",
                "channel",
                "attributes",
                "size",
                "staff"
            ]
        );
        assert_eq!(
            b.column_by_name("staff").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(b.column_by_name("size").unwrap().null_count(), 1);

        // Declared types win; a referenced attribute no outlet has is an all-null column.
        let declared = BTreeMap::from([
            ("staff".to_owned(), AttributeType::Text),
            ("floor".to_owned(), AttributeType::Number),
        ]);
        let referenced = BTreeSet::from(["colour".to_owned(), "name".to_owned()]);
        let b = outlet_table(&m, &declared, &referenced).unwrap();
        let ty = |c: &str| b.column_by_name(c).unwrap().data_type().clone();
        assert_eq!(ty("staff"), DataType::Utf8);
        assert_eq!(ty("floor"), DataType::Float64);
        assert_eq!(ty("colour"), DataType::Utf8);
        assert_eq!(b.column_by_name("colour").unwrap().null_count(), 2);
        assert_eq!(b.num_columns(), 9, "name is a field, not an attribute");
    }
}
