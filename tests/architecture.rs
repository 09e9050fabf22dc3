//! The layering ARCHITECTURE.md promises, checked: no import cycle between tmr's top-level modules.
//! A cycle is how policy ends up calling into plumbing and plumbing into reports; the leaves (`units`,
//! `text`, `digest`) exist so that every layer can share plain things without one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its non-test code names as `crate::…`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
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
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere; comments and doc links are not imports.
            let code = text.split("#[cfg(test)]").next().unwrap();
            let deps = graph.entry(top.clone()).or_default();
            for line in code.lines() {
                let line = line.split("//").next().unwrap();
                for (i, _) in line.match_indices("crate::") {
                    let name: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                        .collect();
                    if !name.is_empty() && name != top {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
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

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = imports();
    assert!(graph.len() > 20, "the scan found the modules: {:?}", graph.keys());
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(m, deps)| {
            deps.iter().filter(|d| reaches(&graph, d, m)).map(move |d| format!("{m} -> {d}"))
        })
        .collect();
    assert!(cycles.is_empty(), "imports that close a cycle (each edge lies on one):\n{}", cycles.join("\n"));
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
