//! The layering rules of the codebase, checked on the source: SDK, a2, reqwest and Lambda types
//! stay in the adapters and the Lambda entry module; `functions/*/src/main.rs` are wiring only.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source lines that are code (comments and doc comments dropped).
fn code_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("readable source file")
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .map(str::to_owned)
        .collect()
}

/// Does `line` name the crate `name` (not as the tail of another identifier, like `sha2::`)?
fn mentions(line: &str, name: &str) -> bool {
    line.match_indices(name)
        .any(|(at, _)| line[..at].chars().next_back().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_')))
}

const FOREIGN: [&str; 8] =
    ["aws_sdk_", "aws_config", "aws_smithy", "lambda_http", "lambda_runtime", "aws_lambda_events", "a2::", "reqwest"];

#[test]
fn sdk_provider_and_lambda_types_appear_only_in_adapters_and_the_lambda_entry_module() {
    let shared = root().join("shared/src");
    let mut files = Vec::new();
    rust_files(&shared, &mut files);
    assert!(files.len() > 20, "found the sources");
    let mut offenders = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&shared).expect("under shared/src").to_string_lossy().into_owned();
        if relative.starts_with("adapters/") || relative.starts_with("lambda/") {
            continue;
        }
        for line in code_lines(file) {
            if let Some(name) = FOREIGN.iter().find(|name| mentions(&line, name)) {
                offenders.push(format!("{relative}: {name} in `{line}`"));
            }
        }
    }
    assert!(offenders.is_empty(), "outside the adapters: {offenders:#?}");
}

#[test]
fn every_function_main_is_wiring_only() {
    let functions = root().join("functions");
    let mut checked = 0;
    for entry in std::fs::read_dir(&functions).expect("functions/").flatten() {
        let main = entry.path().join("src/main.rs");
        if !main.exists() {
            continue;
        }
        let code: Vec<String> = code_lines(&main).into_iter().filter(|l| !l.is_empty()).collect();
        let fns = code.iter().filter(|l| l.contains("fn ")).count();
        let limit = if entry.file_name() == "local" { 60 } else { 12 };
        assert!(code.len() <= limit, "{}: {} code lines (limit {limit})", main.display(), code.len());
        assert!(fns <= 2, "{}: {fns} functions; behaviour belongs in the pushgate crate", main.display());
        assert!(
            !code.iter().any(|l| FOREIGN.iter().any(|f| mentions(l, f))),
            "{}: uses an SDK directly",
            main.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 11, "local + 10 Lambda functions");
}

/// Absolute links come from `PUSHGATE_PUBLIC_URL` or from the server that received the request
/// (its listen address, or API Gateway's domain), never from a header the client chose.
#[test]
fn the_api_layer_never_reads_the_host_header() {
    let api = root().join("shared/src/api");
    let mut files = Vec::new();
    rust_files(&api, &mut files);
    assert!(!files.is_empty(), "found the API sources");
    let mut offenders = Vec::new();
    for file in &files {
        for line in code_lines(file) {
            let lower = line.to_ascii_lowercase();
            if lower.contains("header::host") || lower.contains("\"host\"") || lower.contains("forwarded") {
                offenders.push(format!("{}: `{line}`", file.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "the API reads Host: {offenders:#?}");
}
