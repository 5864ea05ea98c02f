//! The layering rules of ARCHITECTURE.md that a grep can hold: only the
//! store touches sled, only the bus touches Redis. (The module graph's
//! cycles are checked by `cargo modules` in `.ci/run`.)

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source files outside `allowed` that mention `needle` in code (not in
/// `//` comments).
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .expect("under the crate")
            .to_string_lossy()
            .into_owned();
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(needle) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn only_the_store_touches_sled() {
    assert_eq!(offenders("sled::", &["src/store/"]), Vec::<String>::new());
}

#[test]
fn only_the_bus_touches_redis() {
    assert_eq!(offenders("redis::", &["src/bus.rs"]), Vec::<String>::new());
}

#[test]
fn only_the_file_module_touches_the_object_store() {
    assert_eq!(
        offenders("object_store::", &["src/files/"]),
        Vec::<String>::new()
    );
}
