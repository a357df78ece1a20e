//! The provisioner's layering rule, checked on its source: each layer uses
//! only the layers below it (model ← state ← act ← controllers ← run), a
//! controller never uses another controller, and no module of any crate of
//! the workspace imports a module that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate, e.g. `["controllers", "drift", "decide"]`.
type ModPath = Vec<String>;

/// The layer a module of the provisioner belongs to; higher may use lower.
fn layer(module: &[String]) -> usize {
    match module.first().map(String::as_str) {
        None => 4, // lib.rs and main.rs wire everything
        Some("model" | "error" | "metrics") => 0,
        Some("state") => 1,
        Some("act") => 2,
        Some("controllers") => 3,
        Some(_) => 4, // run, cli
    }
}

/// Every `.rs` file under `src`, by module path, with its text.
fn modules(src: &Path) -> BTreeMap<ModPath, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                found.insert(module_path(src, &path), text);
            }
        }
    }
    found
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: ModPath = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| matches!(l.as_str(), "mod" | "lib" | "main"))
    {
        parts.pop();
    }
    parts
}

/// The text without `#[cfg(test)] mod … { … }` blocks (tests may reach
/// anywhere) and without comments.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find('{') else {
            rest = "";
            break;
        };
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths `module`'s code names through `crate::…` and `super::…`.
fn references(module: &[String], text: &str) -> Vec<ModPath> {
    let code = code_of(text);
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if code[..at].chars().last().is_some_and(is_ident) {
                continue;
            }
            let tail: String = code[at..]
                .chars()
                .take_while(|c| is_ident(*c) || *c == ':')
                .collect();
            let mut segments: Vec<&str> = tail.split("::").filter(|s| !s.is_empty()).collect();
            let mut base: ModPath = Vec::new();
            if segments.first() == Some(&"crate") {
                segments.remove(0);
            } else {
                base = module.to_vec();
                while segments.first() == Some(&"super") {
                    segments.remove(0);
                    base.pop();
                }
            }
            base.extend(segments.iter().map(|s| (*s).to_owned()));
            found.push(base);
        }
    }
    found
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve(path: &[String], modules: &BTreeMap<ModPath, String>) -> Option<ModPath> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains_key(p))
}

/// Whether one is the other's ancestor (or the same): a parent declares its
/// children and they may use it, so such pairs are not imports.
fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Every import between two unrelated modules of a crate.
fn edges(modules: &BTreeMap<ModPath, String>) -> BTreeSet<(ModPath, ModPath)> {
    let mut edges = BTreeSet::new();
    for (module, text) in modules {
        for reference in references(module, text) {
            if let Some(target) = resolve(&reference, modules) {
                if !related(module, &target) {
                    edges.insert((module.clone(), target));
                }
            }
        }
    }
    edges
}

/// What breaks the provisioner's layering, one line each.
fn layering_violations(modules: &BTreeMap<ModPath, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (from, to) in edges(modules) {
        if layer(&to) > layer(&from) {
            problems.push(format!(
                "{} (layer {}) uses {} (layer {})",
                from.join("::"),
                layer(&from),
                to.join("::"),
                layer(&to)
            ));
        }
        let controller = |m: &ModPath| {
            (m.first().map(String::as_str) == Some("controllers"))
                .then(|| m.get(1).cloned())
                .flatten()
        };
        if let (Some(a), Some(b)) = (controller(&from), controller(&to)) {
            if a != b {
                problems.push(format!(
                    "controller {a} uses controller {b} ({} -> {})",
                    from.join("::"),
                    to.join("::")
                ));
            }
        }
    }
    problems
}

/// Groups of two or more modules that reach each other through imports.
fn cycles(modules: &BTreeMap<ModPath, String>) -> Vec<Vec<String>> {
    let edges = edges(modules);
    let mut next: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (from, to) in &edges {
        next.entry(from).or_default().push(to);
    }
    let reach = |start: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(m) = stack.pop() {
            for n in next.get(&m).into_iter().flatten() {
                if seen.insert((*n).clone()) {
                    stack.push((*n).clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        modules.keys().map(|m| (m, reach(m))).collect();
    let mut groups: BTreeSet<Vec<String>> = BTreeSet::new();
    for (module, reached) in &reaches {
        let group: Vec<String> = reached
            .iter()
            .filter(|other| reaches.get(other).is_some_and(|r| r.contains(*module)))
            .map(|m| m.join("::"))
            .collect();
        if group.len() >= 2 {
            groups.insert(group);
        }
    }
    groups.into_iter().collect()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_provisioner_s_layers_only_depend_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(
        modules.len() > 40,
        "the provisioner's modules were not found under {}",
        src.display()
    );
    let problems = layering_violations(&modules);
    assert!(
        problems.is_empty(),
        "upward imports:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_module_of_the_workspace_imports_one_that_imports_it_back() {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let members: Vec<String> = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .map(|l| l.split('"').skip(1).step_by(2).map(str::to_owned).collect())
        .unwrap_or_default();
    assert!(members.len() >= 8, "workspace members: {members:?}");
    let mut found = Vec::new();
    for member in &members {
        let modules = modules(&root.join(member).join("src"));
        for group in cycles(&modules) {
            found.push(format!("{member}: {}", group.join(", ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<ModPath, String> {
    files
        .iter()
        .map(|(path, text)| {
            let module = path
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            (module, (*text).to_owned())
        })
        .collect()
}

#[test]
fn the_checks_catch_an_upward_import_a_controller_pair_and_a_cycle() {
    let modules = tree(&[
        ("model", "pub mod claim;"),
        ("model/claim", "use crate::state::Snapshot;"),
        ("state", "use crate::model::claim::x;"),
        ("controllers", "pub mod a; pub mod b;"),
        ("controllers/a", "use crate::controllers::b::helper;"),
        (
            "controllers/b",
            "use super::super::model::claim; // crate::run::x\n",
        ),
        ("run", "use crate::controllers::a;"),
    ]);
    let problems = layering_violations(&modules);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("model::claim (layer 0) uses state")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("controller a uses controller b")),
        "{problems:?}"
    );
    assert_eq!(
        problems.len(),
        2,
        "comments and downward uses are fine: {problems:?}"
    );
    let cycles = cycles(&modules);
    assert_eq!(
        cycles,
        vec![vec!["model::claim".to_owned(), "state".to_owned()]]
    );
    let tests_only = tree(&[
        ("model", "#[cfg(test)]\nmod tests { use crate::run::x; }"),
        ("run", "use crate::model::y;"),
    ]);
    assert!(layering_violations(&tests_only).is_empty());
}
