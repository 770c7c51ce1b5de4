//! The crate's layout is part of its documentation: these checks keep the module map in
//! `lib.rs` true, files small, and the top-level modules free of import cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Files past this many lines do more than one job (generated code and tests excepted).
const MAX_LINES: usize = 520;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's top-level modules: `src/x.rs` and `src/x/mod.rs`.
fn top_level_modules() -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for entry in fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let folder = path.is_dir() && path.join("mod.rs").exists();
        let file = path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main";
        if folder || file {
            modules.insert(name);
        }
    }
    modules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn lib_rs_maps_every_module() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let map: String = lib.lines().filter(|l| l.starts_with("//!")).collect();
    for module in top_level_modules() {
        assert!(
            map.contains(&format!("[`{module}`]")) || map.contains(&format!("`{module}`")),
            "module `{module}` is missing from the map at the top of gateway/src/lib.rs"
        );
        assert!(
            lib.contains(&format!("mod {module};")),
            "module `{module}` is not declared in gateway/src/lib.rs"
        );
    }
}

#[test]
fn no_file_does_too_many_jobs() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let too_long: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("tests.rs"))
        .filter_map(|f| {
            let lines = fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(too_long.is_empty(), "split these files: {too_long:?}");
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let modules = top_level_modules();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for module in &modules {
        let mut files = Vec::new();
        let dir = src().join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src().join(format!("{module}.rs")));
        }
        let used = uses.entry(module.clone()).or_default();
        for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
            let text = fs::read_to_string(file).unwrap();
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) && name != *module {
                    used.insert(name);
                }
            }
        }
    }
    // The `testing` kit stands outside the flow: it may use anything, and nothing uses it.
    uses.remove("testing");
    assert!(
        uses["session"].contains("pool"),
        "the scan sees the imports it checks: {uses:?}"
    );
    for (module, used) in &uses {
        let mut path = vec![module.clone()];
        if let Some(cycle) = find_cycle(module, used, &uses, &mut path) {
            panic!(
                "import cycle between top-level modules: {}",
                cycle.join(" -> ")
            );
        }
    }
}

fn find_cycle(
    start: &str,
    next: &BTreeSet<String>,
    uses: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for module in next {
        if module == start {
            let mut cycle = path.clone();
            cycle.push(module.clone());
            return Some(cycle);
        }
        if path.contains(module) {
            continue;
        }
        path.push(module.clone());
        if let Some(found) = uses
            .get(module)
            .and_then(|n| find_cycle(start, n, uses, path))
        {
            return Some(found);
        }
        path.pop();
    }
    None
}
