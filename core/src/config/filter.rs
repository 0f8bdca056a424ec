//! A segmentation's `filter`: one SQL predicate over one outlet's fields (its master
//! record and attributes), its form checked with the parser DataFusion runs it with:
//! by the API when a definition is written (so a filter the aggregator would refuse
//! is refused there, naming why, instead of failing every pass of its segmentation
//! afterwards), and by the aggregator at each pass (definitions from the config file,
//! and any stored before).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, Expr, FunctionArguments};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// The functions a `filter` may call: cheap, and none allocates more than its
/// arguments' size.
pub const FILTER_FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "length",
    "char_length",
    "character_length",
    "coalesce",
    "nullif",
    "abs",
    "round",
    "floor",
    "ceil",
    "substr",
    "starts_with",
    "ends_with",
    "strpos",
    "regexp_like",
];

/// The columns `filter` names (its bare identifiers, and the last part of a compound
/// one), or why it is not one predicate over one outlet's fields: it does not parse,
/// it has text after the expression but one `;`, a subquery, or a function other than
/// [`FILTER_FUNCTIONS`]. The filter runs as SQL on every aggregator pass; a cross join
/// or a function that allocates at will would hold every segmentation's pass after
/// it. (A table can only appear inside a subquery.)
pub fn filter_columns(filter: &str) -> Result<BTreeSet<String>, String> {
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(filter)
        .and_then(|mut p| {
            let expr = p.parse_expr()?;
            let _ = p.consume_token(&Token::SemiColon);
            let next = p.peek_token();
            if next.token == Token::EOF {
                Ok(expr)
            } else {
                p.expected("the end of the filter", next)
            }
        })
        .map_err(|e| e.to_string())?;
    let mut names = BTreeSet::new();
    let refused = visit_expressions(&expr, |e| {
        match e {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                return ControlFlow::Break("subqueries are not allowed".to_owned());
            }
            Expr::Function(fun) => {
                let name = fun.name.to_string().to_lowercase();
                if !FILTER_FUNCTIONS.contains(&name.as_str())
                    || matches!(fun.args, FunctionArguments::Subquery(_))
                {
                    return ControlFlow::Break(format!(
                        "function `{name}` is not one of {}",
                        FILTER_FUNCTIONS.join(", ")
                    ));
                }
            }
            Expr::Identifier(i) => {
                names.insert(i.value.clone());
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    names.insert(last.value.clone());
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    match refused {
        ControlFlow::Break(why) => Err(why),
        ControlFlow::Continue(()) => Ok(names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_predicate_over_an_outlets_fields_names_its_columns() {
        let names =
            filter_columns("lower(channel) = 'modern' AND t.region IN ('N', 'S');").unwrap();
        assert_eq!(
            names,
            BTreeSet::from(["channel".to_owned(), "region".to_owned()])
        );
    }

    #[test]
    fn a_definitions_filter_problem_names_it() {
        let mut seg = crate::config::SegmentationConfig::named("mix");
        assert_eq!(seg.filter_problem(), None);
        seg.filter = Some("  ".into());
        assert_eq!(
            seg.filter_problem(),
            None,
            "a blank filter selects every outlet"
        );
        seg.filter = Some("EXISTS (SELECT 1)".into());
        assert_eq!(
            seg.filter_problem().as_deref(),
            Some("segmentation `mix`: filter `EXISTS (SELECT 1)`: subqueries are not allowed")
        );
    }

    #[test]
    fn more_than_a_predicate_is_refused_naming_why() {
        for (filter, why) in [
            (
                "(SELECT count(*) FROM outlet_master a, outlet_master b) > 0",
                "subqueries",
            ),
            ("EXISTS (SELECT 1)", "subqueries"),
            ("region IN (SELECT region FROM outlet_master)", "subqueries"),
            ("length(repeat(size, 2000000000)) > 0", "function `repeat`"),
            ("region = 'N' OR true; SELECT 1", "the end of the filter"),
            ("region = ", "Expected"),
        ] {
            let e = filter_columns(filter).unwrap_err();
            assert!(e.contains(why), "{filter}: {e}");
        }
    }
}
