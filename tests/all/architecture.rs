//! The architecture holds: host modules import only downward through the
//! layers `docs/architecture.md` declares (so no import cycle can form), and
//! the wire crate stays free of I/O (no tokio, axum, hyper, reqwest or
//! wasmtime anywhere in its dependency tree).
//!
//! The layer table is read from `docs/architecture.md` itself, so the
//! document and the check cannot disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use switchyard_tests::repo_path;

/// Crates the wire crate must never depend on, directly or not.
const IO_CRATES: &[&str] = &["tokio", "axum", "hyper", "reqwest", "wasmtime", "mio"];

/// The layers of `docs/architecture.md`, top first: the fenced block after
/// the `<!-- layers -->` marker, one layer per line, modules separated by
/// spaces (`#` starts a comment).
fn layers() -> Vec<Vec<String>> {
    let doc =
        std::fs::read_to_string(repo_path("docs/architecture.md")).expect("docs/architecture.md");
    let after = doc
        .split_once("<!-- layers -->")
        .expect("docs/architecture.md has a <!-- layers --> marker")
        .1;
    let block = after
        .split_once("```")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a fenced block after the layers marker")
        .0;
    block
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|layer| !layer.is_empty())
        .collect()
}

/// The top-level modules `lib.rs` declares.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let tokens: Vec<TokenTree> = TokenStream::from_str(&lib)
        .expect("lib.rs tokenizes")
        .into_iter()
        .collect();
    tokens
        .windows(3)
        .filter_map(|w| match w {
            [
                TokenTree::Ident(kw),
                TokenTree::Ident(name),
                TokenTree::Punct(p),
            ] if kw == "mod" && p.as_char() == ';' => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

/// Every `.rs` file under `dir`, with the module path it defines relative to
/// the crate root (`route/mod.rs` → `["route"]`, `route/stream.rs` →
/// `["route", "stream"]`).
fn source_files(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<String>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read source directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under the root");
            let mut module: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|m| m == "mod" || m == "lib" || m == "main")
            {
                module.pop();
            }
            out.push((path, module));
        }
    }
}

/// Collects the top-level modules that the paths in `tokens` name, for code
/// living in module `here` (a path from the crate root).
fn referenced(tokens: TokenStream, here: &[String], out: &mut BTreeSet<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is_path_sep = |i: usize| {
        matches!((tokens.get(i), tokens.get(i + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':')
    };
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            // An inline module (`mod tests { ... }`): its paths are one level deeper.
            TokenTree::Ident(kw) if kw == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(body))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                    && body.delimiter() == Delimiter::Brace
                {
                    let mut inner = here.to_vec();
                    inner.push(name.to_string());
                    referenced(body.stream(), &inner, out);
                    i += 3;
                    continue;
                }
            }
            TokenTree::Ident(start)
                if (start == "crate" || start == "super") && is_path_sep(i + 1) =>
            {
                // `crate::x`, or `super::super::x` climbing out of the module.
                let mut depth = here.len();
                let mut j = i;
                if start == "crate" {
                    depth = 0;
                    j += 3;
                } else {
                    while matches!(tokens.get(j), Some(TokenTree::Ident(s)) if s == "super")
                        && is_path_sep(j + 1)
                    {
                        depth = depth.saturating_sub(1);
                        j += 3;
                    }
                }
                if depth == 0 {
                    match tokens.get(j) {
                        Some(TokenTree::Ident(name)) => {
                            out.insert(name.to_string());
                        }
                        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
                            // `crate::{a::b, c}`: the first name of each item.
                            let mut first = true;
                            for t in group.stream() {
                                match t {
                                    TokenTree::Ident(name) if first => {
                                        out.insert(name.to_string());
                                        first = false;
                                    }
                                    TokenTree::Punct(p) if p.as_char() == ',' => first = true,
                                    _ => first = false,
                                }
                            }
                        }
                        _ => {}
                    }
                }
                i = j.max(i + 1);
                continue;
            }
            TokenTree::Group(group) => referenced(group.stream(), here, out),
            _ => {}
        }
        i += 1;
    }
}

/// Which top-level modules each top-level module imports.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level_modules(src);
    let mut files = Vec::new();
    source_files(src, src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (path, module) in files {
        let Some(top) = module.first().filter(|m| modules.contains(*m)) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read source");
        let tokens = TokenStream::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not tokenize: {e:?}", path.display()));
        let mut names = BTreeSet::new();
        referenced(tokens, &module, &mut names);
        let edges = graph.get_mut(top).expect("known module");
        edges.extend(
            names
                .into_iter()
                .filter(|n| n != top && modules.contains(n)),
        );
    }
    graph
}

/// A cycle through `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn the_path_reader_sees_every_form_of_import() {
    let read = |src: &str, here: &[&str]| {
        let here: Vec<String> = here.iter().map(|s| s.to_string()).collect();
        let mut out = BTreeSet::new();
        referenced(TokenStream::from_str(src).expect("tokens"), &here, &mut out);
        out.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(read("use crate::route::Executor;", &["api"]), ["route"]);
    assert_eq!(
        read("use crate::{spend::X, state};", &["api"]),
        ["spend", "state"]
    );
    assert_eq!(
        read("fn f() { crate::metrics::now() }", &["api"]),
        ["metrics"]
    );
    assert_eq!(
        read("use super::super::config::Team;", &["api", "admin"]),
        ["config"]
    );
    assert_eq!(
        read("use super::Thing;", &["api", "admin"]),
        Vec::<String>::new()
    );
    assert_eq!(
        read(
            "mod tests { use super::super::store::X; }",
            &["api", "admin"]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        read("mod tests { use super::super::store::X; }", &["api"]),
        ["store"]
    );
    // Comments and doc text are not imports.
    assert_eq!(
        read(
            "/// see [`crate::route`]\n// crate::spend\nfn f() {}",
            &["api"]
        ),
        Vec::<String>::new()
    );
}

#[test]
fn host_modules_import_only_downward_through_the_documented_layers() {
    let src = repo_path("host/src");
    let graph = module_graph(&src);
    let layers = layers();
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (m.as_str(), i)))
        .collect();

    let undocumented: Vec<&String> = graph
        .keys()
        .filter(|m| !layer_of.contains_key(m.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "host modules missing from the layer table of docs/architecture.md: {undocumented:?}"
    );
    let stale: Vec<&&str> = layer_of
        .keys()
        .filter(|m| !graph.contains_key(**m))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/architecture.md lists modules lib.rs does not declare: {stale:?}"
    );

    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between host modules: {}", cycle.join(" → "));
    }
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from, to)))
        .filter(|(from, to)| layer_of[to.as_str()] <= layer_of[from.as_str()])
        .map(|(from, to)| format!("{from} → {to}"))
        .collect();
    assert!(
        upward.is_empty(),
        "imports that do not go down the layers of docs/architecture.md: {upward:?}"
    );
}

/// The packages `name` depends on, directly or not, per Cargo.lock.
fn dependency_closure(lock: &toml::Table, name: &str) -> BTreeSet<String> {
    let packages = lock["package"].as_array().expect("Cargo.lock packages");
    let deps_of = |pkg: &str| -> Vec<String> {
        packages
            .iter()
            .filter(|p| p["name"].as_str() == Some(pkg))
            .flat_map(|p| {
                p.get("dependencies")
                    .and_then(|d| d.as_array())
                    .cloned()
                    .unwrap_or_default()
            })
            // Entries are "name" or "name version" when several versions are locked.
            .filter_map(|d| {
                d.as_str()
                    .and_then(|s| s.split(' ').next())
                    .map(str::to_owned)
            })
            .collect()
    };
    let mut seen = BTreeSet::new();
    let mut todo = deps_of(name);
    while let Some(next) = todo.pop() {
        if seen.insert(next.clone()) {
            todo.extend(deps_of(&next));
        }
    }
    seen
}

#[test]
fn the_wire_crate_depends_on_no_io_crate() {
    let lock: toml::Table = std::fs::read_to_string(repo_path("Cargo.lock"))
        .expect("Cargo.lock")
        .parse()
        .expect("Cargo.lock parses");
    let host = dependency_closure(&lock, "switchyard");
    assert!(
        host.contains("switchyard-wire"),
        "the host uses the wire crate"
    );
    assert!(
        host.contains("tokio"),
        "the closure walk sees the host's transitive dependencies"
    );
    let wire = dependency_closure(&lock, "switchyard-wire");
    let io: Vec<&String> = wire
        .iter()
        .filter(|d| IO_CRATES.contains(&d.as_str()))
        .collect();
    assert!(
        io.is_empty(),
        "switchyard-wire depends on I/O crates: {io:?} (all: {wire:?})"
    );
}
