//! `protocol/README.md` against the server's own table of which request
//! can get which error (`preau::kinds::returned_by`: the protocol module's
//! table and each kind's for its own requests): the error-code column of
//! every request table and the "Returned by" column of the error table.
//! (Debug builds of the server also check every refusal they send against
//! that table, so the whole suite exercises it.) A third party writes a
//! client from the spec alone: a code the spec forgets is one it cannot
//! handle.

use std::collections::BTreeSet;

use preau::kinds::{request_types, returned_by};
use preau::protocol::{ErrorCode, ANY_REQUEST};

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/README.md"))
        .expect("read protocol/README.md")
}

/// The backticked words of a table cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn code(name: &str) -> Option<ErrorCode> {
    ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
}

/// Cells of a Markdown table row (`| a | b |`), `\|` kept inside cells.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("a cell").push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().expect("a cell").push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

#[test]
fn every_request_tables_error_column_matches_the_server() {
    let spec = spec();
    let request_types = request_types();
    let mut checked = BTreeSet::new();
    let mut errors_column = None;
    for line in spec.lines() {
        if !line.starts_with('|') {
            errors_column = None;
            continue;
        }
        let row = cells(line);
        if let Some(at) = row.iter().position(|c| c == "error codes") {
            errors_column = Some(at);
            continue;
        }
        let Some(at) = errors_column else { continue };
        let Some(request) = ticked(&row[0]).into_iter().next() else {
            continue;
        };
        if !request_types.contains(&request.as_str()) {
            continue;
        }
        let listed: BTreeSet<&str> = ticked(&row[at])
            .iter()
            .filter_map(|w| code(w))
            .filter(|c| !ANY_REQUEST.contains(c))
            .map(ErrorCode::as_str)
            .collect();
        let server: BTreeSet<&str> = returned_by(&request)
            .iter()
            .copied()
            .map(ErrorCode::as_str)
            .collect();
        assert_eq!(
            listed, server,
            "`{request}`: the spec's error codes (left) differ from the server's (right)"
        );
        checked.insert(request);
    }
    for request in &request_types {
        assert!(
            checked.contains(*request),
            "no request table lists the error codes of `{request}`"
        );
    }
}

#[test]
fn the_error_tables_returned_by_column_matches_the_server() {
    let spec = spec();
    let request_types = request_types();
    let table = spec
        .split("## Error codes")
        .nth(1)
        .expect("an Error codes section");
    let mut seen = BTreeSet::new();
    for line in table.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let row = cells(line);
        let Some(code) = ticked(&row[0]).first().and_then(|w| code(w)) else {
            continue;
        };
        seen.insert(code.as_str());
        let returned_by_column = &row[2];
        if ANY_REQUEST.contains(&code) {
            assert!(
                returned_by_column.starts_with("any request"),
                "`{}` can come from any request: {returned_by_column}",
                code.as_str()
            );
            continue;
        }
        let listed: BTreeSet<String> = ticked(returned_by_column)
            .into_iter()
            .filter(|w| request_types.contains(&w.as_str()))
            .collect();
        let server: BTreeSet<String> = request_types
            .iter()
            .filter(|r| returned_by(r).contains(&code))
            .map(|r| (*r).to_owned())
            .collect();
        assert_eq!(
            listed,
            server,
            "`{}`: the spec's Returned by (left) differs from the server's (right)",
            code.as_str()
        );
    }
    for code in ErrorCode::ALL {
        assert!(
            seen.contains(code.as_str()),
            "`{}` is missing from the error table",
            code.as_str()
        );
    }
}
