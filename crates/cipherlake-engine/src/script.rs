//! Running SQL scripts: one or more `;`-separated statements (`CREATE EXTERNAL TABLE`, `SELECT`,
//! `COPY … TO`, `SET`, …) executed in order in one session.

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::error::{EngineError, one_line};
use crate::runtime_settings::apply_runtime_setting;

/// The result of one statement.
#[derive(Debug)]
pub struct StatementOutput {
    /// 1-based position in the script.
    pub index: usize,
    /// The statement's first characters, for messages.
    pub summary: String,
    /// Result rows (empty for DDL).
    pub batches: Vec<RecordBatch>,
    /// Whether the statement produces a result set worth printing (DDL does not).
    pub has_columns: bool,
}

/// Parses a script into statements; a syntax error names its line and column.
pub fn parse_script(sql: &str) -> Result<Vec<Statement>, EngineError> {
    let dialect = GenericDialect {};
    let statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| EngineError::Syntax(strip_parser_prefix(&one_line(&e))))?;
    if statements.is_empty() {
        return Err(EngineError::Syntax(
            "the script contains no statement".to_string(),
        ));
    }
    Ok(statements.into())
}

fn strip_parser_prefix(message: &str) -> String {
    message
        .trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(\"")
        .trim_end_matches("\")")
        .trim_start_matches("sql parser error: ")
        .to_string()
}

/// A statement's first characters on one line.
fn summarize(statement: &Statement) -> String {
    let text = statement
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Runs every statement of `sql` in order, handing each result to `on_result` as soon as it is
/// complete. Stops at the first failing statement.
pub async fn run_script(
    ctx: &SessionContext,
    sql: &str,
    on_result: &mut dyn FnMut(StatementOutput) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    for (i, statement) in parse_script(sql)?.into_iter().enumerate() {
        let summary = summarize(&statement);
        let fail = |e: datafusion::error::DataFusionError| EngineError::Statement {
            index: i + 1,
            summary: summary.clone(),
            message: one_line(&e),
        };
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(fail)?;
        let (batches, has_columns) = if apply_runtime_setting(ctx, &plan).map_err(fail)? {
            (Vec::new(), false)
        } else {
            let df = ctx.execute_logical_plan(plan).await.map_err(fail)?;
            let has_columns = !df.schema().fields().is_empty();
            (df.collect().await.map_err(fail)?, has_columns)
        };
        on_result(StatementOutput {
            index: i + 1,
            summary: summary.clone(),
            batches,
            has_columns,
        })?;
    }
    Ok(())
}

/// Runs a script and returns the result of its last statement.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    let mut last = Vec::new();
    run_script(ctx, sql, &mut |out| {
        last = out.batches;
        Ok(())
    })
    .await?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse_script("SELECT 1;\nSELEC 2").unwrap_err().to_string();
        assert!(err.contains("Line: 2, Column: 1"), "{err}");
    }

    #[test]
    fn empty_scripts_are_refused() {
        assert!(matches!(parse_script(" ; "), Err(EngineError::Syntax(_))));
    }
}
