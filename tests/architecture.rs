//! The layering ARCHITECTURE.md promises, checked: no import cycle between tmr's top-level modules, nor
//! between the tracer's (`src/trace/`), and the process layer importing the tracer, never the reverse.
//! A cycle is how policy ends up calling into plumbing and plumbing into reports; the leaves (`units`,
//! `text`, `digest`) exist so that every layer can share plain things without one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// A file's non-test code with its comments dropped: unit tests may reach anywhere, and comments and doc
/// links are not imports.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    code.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The first name of every path that starts with `prefix`: `a` in `prefix a::X`, and `a` and `b` in
/// `prefix {a::X, b}`.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let ident =
        |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut names = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.push(ident(rest));
            continue;
        };
        let (mut depth, mut item_starts) = (0, true);
        for (j, c) in group.char_indices() {
            match c {
                '}' if depth == 0 => break,
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => item_starts = true,
                c if item_starts && !c.is_whitespace() => {
                    names.push(ident(&group[j..]));
                    item_starts = false;
                }
                _ => {}
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Top-level module → the top-level modules its non-test code names as `crate::…`.
fn imports() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let deps = graph.entry(top.clone()).or_default();
            for name in names_after(&code_of(&path), "crate::") {
                if name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                    && name != top
                {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// The files of the directory module `src/DIR` → the sibling files their non-test code names, as
/// `super::x` or `crate::DIR::x`. `mod.rs` is left out: it declares the others and re-exports
/// (`trace/mod.rs` only the stand-ins for other architectures), so a path through it is not followed.
fn submodule_imports(dir: &str) -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let Ok(entries) = std::fs::read_dir(&root) else { return Graph::new() };
    let files: BTreeMap<String, std::path::PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().to_string(), p))
        .filter(|(name, _)| name != "mod")
        .collect();
    let mut graph = Graph::new();
    for (name, path) in &files {
        let code = code_of(path);
        let named =
            names_after(&code, "super::").into_iter().chain(names_after(&code, &format!("crate::{dir}::")));
        let deps: BTreeSet<String> = named.filter(|d| d != name && files.contains_key(d)).collect();
        graph.insert(name.clone(), deps);
    }
    graph
}

fn reaches(graph: &Graph, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if d == to {
                return true;
            }
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    false
}

/// Every import that lies on a cycle, as `from -> to`.
fn cycle_edges(graph: &Graph) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(m, deps)| {
            deps.iter().filter(|d| reaches(graph, d, m)).map(move |d| format!("{m} -> {d}"))
        })
        .collect()
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = imports();
    assert!(graph.len() > 20, "the scan found the modules: {:?}", graph.keys());
    let cycles = cycle_edges(&graph);
    assert!(cycles.is_empty(), "imports that close a cycle (each edge lies on one):\n{}", cycles.join("\n"));
}

/// The tracer in one place (ARCHITECTURE.md, module map): the modules the monitor process runs sit in
/// `trace`, and tmr's process layer uses them (the snapshot reader, `--fork`'s injection, the monitor's
/// constants) without the tracer knowing the process layer. Inside `trace`, no module needs another
/// that needs it back.
#[test]
fn the_tracer_has_no_cycle_and_does_not_import_the_process_layer() {
    let graph = imports();
    assert!(
        graph.contains_key("trace") && graph.contains_key("replica"),
        "the scan found: {:?}",
        graph.keys()
    );
    let mut broken: Vec<String> = ["replica"]
        .iter()
        .filter(|to| reaches(&graph, "trace", to))
        .map(|to| format!("trace -> {to} (directly or not)"))
        .collect();
    let inside = submodule_imports("trace");
    assert!(inside.len() > 10, "the scan found trace's modules: {:?}", inside.keys());
    broken.extend(cycle_edges(&inside).into_iter().map(|e| format!("trace::{e} (on a cycle)")));
    assert!(broken.is_empty(), "imports the tracer's layering forbids:\n{}", broken.join("\n"));
}

/// One event stream (ARCHITECTURE.md, "Reporting"): the loops tell what happened as `events` and never
/// render; every output is a reporter in `reporters`, built from the pure renderers of `report`. So the
/// data and renderers know nothing of the loops or of the reporters, the reporters nothing of the loops,
/// and no loop calls up into the one that calls it (`rerun`, `hunt` and `campaign` into `round`).
#[test]
fn reports_reach_no_loop_and_no_loop_calls_up() {
    let graph = imports();
    let loops = ["round", "rerun", "hunt", "campaign"];
    let mut broken = Vec::new();
    let mut forbid = |from: &str, to: &str| {
        if reaches(&graph, from, to) {
            broken.push(format!("{from} -> {to}"));
        }
    };
    for to in loops.iter().chain(&["events", "reporters"]) {
        forbid("report", to);
    }
    for to in loops.iter().chain(&["reporters"]) {
        forbid("events", to);
    }
    for to in loops {
        forbid("reporters", to);
    }
    for from in ["rerun", "hunt", "campaign"] {
        forbid(from, "round");
    }
    assert!(
        broken.is_empty(),
        "imports the event-stream layering forbids (directly or not):\n{}",
        broken.join("\n")
    );
}
