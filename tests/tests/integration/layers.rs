//! The layering rules of the codebase. The crate graph is checked on `cargo metadata` (which crate
//! may use which); the rest on the source: `functions/*/src/main.rs` are wiring only, and the API
//! never reads the `Host` header.

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

/// Each workspace package's normal (non-dev) dependencies, by package name, from `cargo metadata`.
fn dependency_graph() -> std::collections::BTreeMap<String, Vec<String>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("dependency name").to_owned())
                .collect();
            (package["name"].as_str().expect("package name").to_owned(), deps)
        })
        .collect()
}

/// The architecture is the crate graph: which pushgate crate may use which, and which may reach
/// the outside world. Cargo enforces the edges that exist; this test says which edges may exist,
/// so that adding one is a visible decision rather than a line in a Cargo.toml.
#[test]
fn each_crate_depends_only_on_the_crates_its_layer_allows() {
    const SDKS: [&str; 10] = [
        "aws-config",
        "aws-sdk-dynamodb",
        "aws-sdk-sqs",
        "aws-sdk-kms",
        "aws-sdk-scheduler",
        "aws_lambda_events",
        "lambda_http",
        "lambda_runtime",
        "a2",
        "reqwest",
    ];
    // (crate, the pushgate crates it may use, the outside crates it may use among SDKS + servers)
    let rules: [(&str, &[&str], &[&str]); 8] = [
        ("pushgate-core", &[], &[]),
        ("pushgate-api", &["pushgate-core"], &["axum"]),
        ("pushgate-providers", &["pushgate-core"], &["a2", "reqwest"]),
        ("pushgate-memory", &["pushgate-core"], &[]),
        ("pushgate-aws", &["pushgate-core"], &["aws-sdk-dynamodb", "aws-sdk-sqs", "aws-sdk-kms", "aws-sdk-scheduler"]),
        (
            "pushgate-glue",
            &["pushgate-core", "pushgate-api", "pushgate-aws", "pushgate-providers"],
            // Not aws-config: a function configures its SDK clients from Lambda's variables.
            &[
                "aws-sdk-dynamodb",
                "aws-sdk-sqs",
                "aws-sdk-kms",
                "aws-sdk-scheduler",
                "aws_lambda_events",
                "lambda_http",
                "lambda_runtime",
                "axum",
            ],
        ),
        (
            "pushgate-local",
            &[
                "pushgate-core",
                "pushgate-api",
                "pushgate-memory",
                "pushgate-providers",
                "pushgate-aws",
                "pushgate-glue",
            ],
            &["axum", "hyper", "hyper-util", "aws-config", "aws-sdk-dynamodb", "aws-sdk-sqs", "aws-sdk-kms"],
        ),
        // The operator's command: the DynamoDB adapters with the operator's AWS credentials, or
        // a pushgate-local's admin routes over HTTP.
        ("pushgate-admin", &["pushgate-core", "pushgate-aws", "pushgate-glue"], &["aws-config", "reqwest"]),
    ];
    let graph = dependency_graph();
    let mut problems = Vec::new();
    for (name, internal, external) in rules {
        let deps = graph.get(name).unwrap_or_else(|| panic!("{name} is a workspace member"));
        for dep in deps {
            let outside_rule = if dep.starts_with("pushgate-") {
                !internal.contains(&dep.as_str())
            } else {
                (SDKS.contains(&dep.as_str()) || ["axum", "hyper", "hyper-util"].contains(&dep.as_str()))
                    && !external.contains(&dep.as_str())
            };
            if outside_rule {
                problems.push(format!("{name} depends on {dep}"));
            }
        }
    }
    for (name, deps) in &graph {
        let is_function =
            !rules.iter().any(|(r, _, _)| r == name) && !name.starts_with("pushgate-tests") && name != "pushgate-fakes";
        if is_function {
            for dep in deps.iter().filter(|d| d.starts_with("pushgate-")) {
                if !["pushgate-glue", "pushgate-core", "pushgate-api", "pushgate-aws", "pushgate-providers"]
                    .contains(&dep.as_str())
                {
                    problems.push(format!("function {name} depends on {dep}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "edges the architecture does not allow: {problems:#?}");
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
    assert_eq!(checked, 12, "local, admin + 10 Lambda functions");
}

/// Absolute links come from `PUSHGATE_PUBLIC_URL` or from the server that received the request
/// (its listen address, or API Gateway's domain), never from a header the client chose.
#[test]
fn the_api_layer_never_reads_the_host_header() {
    let api = root().join("shared/api/src");
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

/// The first-level modules of `dir` (`x.rs` or `x/mod.rs`), each with its source text.
fn modules_in(dir: &Path) -> Vec<(String, String)> {
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable module dir").flatten() {
        let path = entry.path();
        let name = path.file_stem().expect("a file name").to_string_lossy().into_owned();
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
            files.push(path.clone());
        }
        let code: Vec<String> = files.iter().flat_map(|f| code_lines(f)).collect();
        if !files.is_empty() {
            modules.push((name, code.join("\n")));
        }
    }
    modules
}

/// The sibling modules `code` names through `prefix` (`super::x`, `super::{x, y}`,
/// `crate::app::x`): identifiers after the prefix, alone or in a braced list.
fn named_after(code: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        let items: Vec<&str> = match rest.strip_prefix('{') {
            Some(inner) => inner.split('}').next().unwrap_or_default().split(',').collect(),
            None => vec![rest],
        };
        for item in items {
            let ident: String = item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() {
                names.push(ident);
            }
        }
    }
    names
}

/// Inside the core, the modules of `app` and of `domain` form no cycle (a cycle means a helper
/// filed in the wrong module), and `domain` never reaches into `app`.
#[test]
fn the_core_modules_form_no_cycle_and_the_domain_never_uses_the_use_cases() {
    let core = root().join("shared/core/src");
    let mut problems = Vec::new();
    for layer in ["app", "domain"] {
        let modules = modules_in(&core.join(layer));
        assert!(modules.len() > 5, "found the {layer} modules");
        let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
        let mut edges: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> = Default::default();
        for (name, code) in &modules {
            if layer == "domain" && code.contains("crate::app") {
                problems.push(format!("domain::{name} uses crate::app"));
            }
            let mut named = named_after(code, "super::");
            named.extend(named_after(code, &format!("crate::{layer}::")));
            for other in named {
                if let Some(&target) = names.iter().find(|n| **n == other)
                    && target != name
                {
                    edges.entry(name.as_str()).or_default().insert(target);
                }
            }
        }
        // Depth-first search for a back edge; the path to it is the cycle.
        fn visit<'a>(
            node: &'a str,
            edges: &std::collections::BTreeMap<&'a str, std::collections::BTreeSet<&'a str>>,
            path: &mut Vec<&'a str>,
            done: &mut std::collections::BTreeSet<&'a str>,
            cycles: &mut Vec<String>,
        ) {
            if let Some(at) = path.iter().position(|n| *n == node) {
                cycles.push([&path[at..], &[node]].concat().join(" → "));
                return;
            }
            if !done.insert(node) {
                return;
            }
            path.push(node);
            for next in edges.get(node).into_iter().flatten() {
                visit(next, edges, path, done, cycles);
            }
            path.pop();
        }
        let mut cycles = Vec::new();
        let mut done = std::collections::BTreeSet::new();
        for name in &names {
            visit(name, &edges, &mut Vec::new(), &mut done, &mut cycles);
        }
        problems.extend(cycles.into_iter().map(|c| format!("{layer}: {c}")));
    }
    assert!(problems.is_empty(), "module cycles in the core: {problems:#?}");
}

/// The README's configuration of `pushgate-local` (its table, and the local AWS mode's
/// variables) names exactly the variables the process reads — each of which is also a flag
/// (`pushgate_local::cli::VARIABLES`) — plus `RUST_LOG`.
#[test]
fn the_readmes_configuration_names_exactly_the_variables_pushgate_local_reads() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
    let section = |title: &str| {
        let start = readme.find(title).unwrap_or_else(|| panic!("README has {title}"));
        let rest = &readme[start + title.len()..];
        rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
    };
    let text = section("## Configuration (`pushgate-local`)") + &section("## Local AWS mode");
    let named: std::collections::BTreeSet<String> = text
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            word.len() > 3 && word.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .filter(|word| word.contains('_') && !word.ends_with('_'))
        .map(str::to_owned)
        .collect();
    let read: std::collections::BTreeSet<String> = pushgate_local::cli::VARIABLES
        .iter()
        .map(|(variable, _, _)| (*variable).to_owned())
        .chain(["RUST_LOG".to_owned()])
        .collect();
    let undocumented: Vec<_> = read.difference(&named).collect();
    let unknown: Vec<_> = named.difference(&read).filter(|v| !v.starts_with("AWS_")).collect();
    assert!(undocumented.is_empty(), "read but not in the README: {undocumented:?}");
    assert!(unknown.is_empty(), "in the README but read by nothing: {unknown:?}");
}

/// The README's table of the Lambda functions' environment names exactly the variables the
/// functions' configuration reads (`CloudConfig::from_lookup`, recorded as it asks for them),
/// plus `RUST_LOG`; the AWS SDK's and Lambda's own `AWS_*` variables are Lambda's to document.
#[test]
fn the_readmes_lambda_environment_table_names_exactly_the_variables_the_functions_read() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
    let start = readme.find("Environment of the functions").expect("README has the Lambda environment table");
    let table: Vec<&str> =
        readme[start..].lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).collect();
    let named: std::collections::BTreeSet<String> = table
        .iter()
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .filter(|word| {
            word.len() > 3 && word.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .filter(|word| word.contains('_') && !word.starts_with("AWS_"))
        .map(str::to_owned)
        .collect();
    let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let config = pushgate_glue::cloud::CloudConfig::from_lookup(|name| {
        asked.lock().expect("lock").insert(name.to_owned());
        name.ends_with("_TABLE").then(|| "t".to_owned())
    });
    config.expect("the three tables are all a function needs");
    let read: std::collections::BTreeSet<String> =
        asked.into_inner().expect("lock").into_iter().chain(["RUST_LOG".to_owned()]).collect();
    let undocumented: Vec<_> = read.difference(&named).collect();
    let unknown: Vec<_> = named.difference(&read).collect();
    assert!(undocumented.is_empty(), "read but not in the README's table: {undocumented:?}");
    assert!(unknown.is_empty(), "in the README's table but read by nothing: {unknown:?}");
}
