//! The source tree keeps the shape the README's "How it works" describes: no file over 500
//! lines, and no import cycle between the crate's top-level modules, nor between the parts
//! (files and subfolders) of any folder of `src/` (`mod.rs` counts as the part that declares
//! the others).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

const MAX_LINES: usize = 500;

/// The top-level names in a `{ a::b, c, d::{..} }` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut part) = (0, String::new());
    for ch in group.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(std::mem::take(&mut part));
                continue;
            }
            _ => {}
        }
        part.push(ch);
    }
    heads.push(part);
    heads
        .iter()
        .filter_map(|part| {
            let name: String = part
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The names that follow `prefix` in `text`, reading `prefix{a, b::c}` groups too.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            names.extend(group_heads(&group[..end]));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// A file's code without comments and without its unit tests.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let text = text
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
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
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

/// Every `.rs` file under `folder`, at any depth.
fn rust_files(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).expect("read a source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Which of its parts (files and subfolders) each part of `folder` imports, by the paths its
/// files name: `crate::<folder's path>::part` from anywhere under it, `super::part` from a file
/// directly in it, `part::` from its `mod.rs`. At the top (`src/`, path `crate`) the parts are
/// the crate's modules, and `lib.rs` and `main.rs`, which only declare and wire them, are left
/// out.
fn part_imports(folder: &Path, crate_path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let top = crate_path == "crate";
    let mut parts: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(folder).expect("read a source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            parts.insert(stem(&path));
        }
    }
    if top {
        parts.remove("lib");
        parts.remove("main");
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in rust_files(folder) {
        let inside = path.strip_prefix(folder).expect("under the folder");
        let part = match inside.components().count() {
            1 => stem(&path),
            _ => inside
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if !parts.contains(&part) {
            continue;
        }
        let code = code_of(&path);
        let mut names = names_after(&code, &format!("{crate_path}::"));
        let direct = inside.components().count() == 1;
        if direct && part == "mod" {
            names.extend(
                parts
                    .iter()
                    .filter(|m| !names_after(&code, &format!("{m}::")).is_empty())
                    .cloned(),
            );
        } else if direct && !top {
            names.extend(names_after(&code, "super::"));
        }
        let targets = names
            .into_iter()
            .filter_map(|name| match parts.contains(&name) {
                true => Some(name),
                // An item of the folder itself: what its mod.rs declares or re-exports.
                false => (!top && parts.contains("mod")).then(|| "mod".to_owned()),
            })
            .filter(|target| *target != part)
            .collect::<Vec<_>>();
        edges.entry(part).or_default().extend(targets);
    }
    edges
}

#[test]
fn files_are_small_and_folders_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for path in rust_files(&src) {
        let lines = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count();
        assert!(lines <= MAX_LINES, "{}: {lines} lines", path.display());
        checked += 1;
    }
    assert!(checked > 20, "read the whole tree ({checked} files)");
    // The crate's top-level modules, then every folder below, by its path in the crate.
    let mut folders = vec![(src.clone(), "crate".to_owned())];
    let mut seen = 0;
    while let Some((folder, crate_path)) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                let name = stem(&path);
                folders.push((path, format!("{crate_path}::{name}")));
            }
        }
        let edges = part_imports(&folder, &crate_path);
        assert_eq!(
            find_cycle(&edges),
            None,
            "import cycle in {} ({crate_path})",
            folder.display()
        );
        seen += 1;
    }
    assert!(seen >= 8, "looked at {seen} folders");
}

#[test]
fn a_cycle_is_seen() {
    let edges = BTreeMap::from([
        ("mod".to_owned(), BTreeSet::from(["lookup".to_owned()])),
        ("lookup".to_owned(), BTreeSet::from(["mod".to_owned()])),
    ]);
    assert!(find_cycle(&edges).is_some());
    assert_eq!(
        names_after("use super::{entry::{A, B}, slot::C};", "super::"),
        BTreeSet::from(["entry".to_owned(), "slot".to_owned()])
    );
}
