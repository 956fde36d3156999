//! The crate's layers, checked from the code: every top-level module of `src/` may name (with a
//! `crate::` path, in code outside its unit tests) only the modules of the layers below it, so
//! the module graph has no cycle and every dependency points down. The layers are those of
//! `src/lib.rs` and DESIGN.md "Layers":
//!
//! ```text
//! app
//! shard
//! connection
//! broker
//! protocol, options
//! ```
//!
//! A module that is not in the table fails the test too: a new top-level module must be given
//! its place. Comments and `#[cfg(test)] mod tests` blocks are not read (a unit test may build a
//! part with the configuration of the layer above).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module: a module may use modules of a lower layer only.
const LAYERS: &[(&str, u8)] = &[
    ("protocol", 0),
    ("options", 0),
    ("broker", 1),
    ("connection", 2),
    ("shard", 3),
    ("app", 4),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests { ... }`.
fn code_of(text: &str) -> String {
    let without_tests = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    without_tests
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module named by a `crate::` path (`crate::x`, `crate::{x, y::z}`).
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                names.insert(ident(part.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.remove("");
    names
}

/// (module, file) → the modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for name in named_modules(&code) {
            if name != top {
                edges
                    .entry(top.clone())
                    .or_default()
                    .entry(name)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    edges
}

#[test]
fn every_module_depends_only_on_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut tops = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let name = name.trim_end_matches(".rs").to_owned();
        if name != "lib" && name != "main" {
            tops.insert(name);
        }
    }
    let unplaced: Vec<_> = tops
        .iter()
        .filter(|m| !layer.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "top-level modules without a layer (add them to LAYERS and src/lib.rs): {unplaced:?}"
    );
    let mut wrong = Vec::new();
    for (from, names) in graph(&src) {
        for (to, files) in names {
            let Some(&to_layer) = layer.get(to.as_str()) else {
                continue;
            };
            if to_layer >= layer[from.as_str()] {
                wrong.push(format!("{from} -> {to} (in {files:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that do not point down a layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_paths_and_groups() {
    let code = code_of(
        "use crate::broker::Topic;\nuse crate::{app, shard::Link};\n// crate::ignored\nlet x = crate::options::VERSION;\n#[cfg(test)]\nmod tests {\n use crate::testonly;\n}\n",
    );
    let names: Vec<_> = named_modules(&code).into_iter().collect();
    assert_eq!(names, ["app", "broker", "options", "shard"]);
}
