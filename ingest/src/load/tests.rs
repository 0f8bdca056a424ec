use super::*;

fn maps(m: &[&str]) -> Vec<(String, Expr)> {
    mapping(None, &m.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn a_mapping_to_a_field_the_message_has_no_place_for_is_refused() {
    let ok = maps(&["outlet_id=Id", "name=Shop", "attributes.size=Size"]);
    assert!(check_fields(Kind::Outlets, &ok).is_ok());
    let e = check_fields(Kind::Outlets, &maps(&["outlet_id=Id", "colour=Colour"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field `colour`") && e.contains("attributes.NAME"),
        "{e}"
    );
    // An outlet file has no `outlet.` prefix; an invoice file has no attributes of its own.
    assert!(check_fields(Kind::Outlets, &maps(&["outlet.name=Shop"])).is_err());
    assert!(check_fields(Kind::Invoices, &maps(&["attributes.size=Size"])).is_err());
    assert!(check_fields(Kind::Invoices, &maps(&["attributes.=Size"])).is_err());
    let derived = maps(&[
        "outlet.attributes.size=Size",
        "sku.brand=Brand",
        "net_value=A*B",
    ]);
    assert!(check_fields(Kind::Invoices, &derived).is_ok());
    assert!(check_fields(Kind::Invoices, &maps(&["sku.region=Region"])).is_err());
}

#[test]
fn attributes_are_numbers_only_when_written_as_numbers() {
    let headers: csv::StringRecord = ["Id", "Size", "Staff", "Code", "Area"]
        .into_iter()
        .collect();
    let m = maps(&[
        "outlet_id=Id",
        "attributes.size=Size",
        "attributes.staff=Staff",
        "attributes.code=Code",
        "attributes.area=Area",
        "attributes.chain==yes",
    ]);
    let mut mapper = RowMapper::new(&headers, &m).unwrap();
    let row: csv::StringRecord = ["O1", "M", "4", "007", "12.50"].into_iter().collect();
    let out = mapper.map(&row).unwrap();
    assert_eq!(
        Value::Object(out.record),
        serde_json::json!({"outlet_id": "O1", "attributes": {
            "size": "M", "staff": 4.0, "code": "007", "area": "12.50", "chain": "yes"}})
    );
    // An empty cell leaves the attribute out.
    let row: csv::StringRecord = ["O2", "", "3.5", "", ""].into_iter().collect();
    let out = mapper.map(&row).unwrap();
    assert_eq!(
        Value::Object(out.record),
        serde_json::json!({"outlet_id": "O2", "attributes": {"staff": 3.5, "chain": "yes"}})
    );
}

#[test]
fn spreadsheet_cells_read_as_a_csv_would_hold_them() {
    use calamine::{Data, ExcelDateTime, ExcelDateTimeType};
    // 2010-12-01 08:26 and 2011-12-09 (serials in the 1900 date system).
    let stamp = ExcelDateTime::new(
        40513.0 + (8.0 * 60.0 + 26.0) / 1440.0,
        ExcelDateTimeType::DateTime,
        false,
    );
    let day = ExcelDateTime::new(40886.0, ExcelDateTimeType::DateTime, false);
    assert_eq!(cell_text(&Data::DateTime(stamp)), "2010-12-01T08:26:00");
    assert_eq!(cell_text(&Data::DateTime(day)), "2011-12-09");
    assert_eq!(cell_text(&Data::Float(17850.0)), "17850");
    assert_eq!(cell_text(&Data::Float(2.55)), "2.55");
    assert_eq!(cell_text(&Data::Int(-6)), "-6");
    assert_eq!(cell_text(&Data::String("85123A".into())), "85123A");
    assert_eq!(cell_text(&Data::Empty), "");
    assert_eq!(cell_text(&Data::Error(calamine::CellErrorType::NA)), "#N/A");
}
