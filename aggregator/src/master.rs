//! The tables the feature queries join, from current master data
//! ([`spectra_core::tables::master`]): SKU → level value, and outlets with their JSON
//! attributes spread into columns so a segmentation's `filter` can name them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;
use spectra_core::config::AttributeType;
pub use spectra_core::tables::master::{attribute_text, current, Current, Record};

use crate::Error;

/// The feature an SKU missing from master data counts under.
pub const UNKNOWN: &str = "unknown";

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
/// current outlets with the attribute keys the segmentation's filter names
/// (`referenced`) or its `attribute_types` declare as columns, so a filter like
/// `channel = 'traditional' AND size = 'M'` or `employees > 5` reads naturally. Only
/// those: the keys are the outlets' own (64 a record), and all of them over all
/// outlets could be any number of columns, each as long as the outlets (2,000 records
/// of 64 new keys each would make 128,000). A key's type is
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
    let keys: BTreeSet<&str> = declared
        .keys()
        .chain(referenced)
        .map(String::as_str)
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
        // Keys no filter names are not spread: the outlets' own keys are unbounded.
        let b = outlet_table(&m, &BTreeMap::new(), &BTreeSet::new()).unwrap();
        assert_eq!(b.num_columns(), 5);
        let named = BTreeSet::from(["size".to_owned(), "staff".to_owned()]);
        let b = outlet_table(&m, &BTreeMap::new(), &named).unwrap();
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
        assert_eq!(
            b.num_columns(),
            8,
            "name is a field, not an attribute; size is neither named nor declared"
        );
    }
}
