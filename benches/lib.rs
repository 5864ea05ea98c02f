//! What the load generator's `compare` report decides: the verdict (which
//! ratios are gated, their drift across runs) and the goals. Pure
//! functions over numbers, so they are unit-tested here
//! (`cargo test -p preau-benches --lib`).

pub mod verdict;

/// `cargo bench` starts a bench in its package's folder (`benches/`);
/// the benches' paths (`benches/results`, `target/release/preau`) are
/// relative to the repository's root, where `benches/run.sh` starts them.
/// Under `cargo bench` (CARGO_MANIFEST_DIR set and the working directory
/// being that folder), move to the root; otherwise change nothing.
pub fn cd_to_repository_root() {
    let Some(manifest) = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from)
    else {
        return;
    };
    let here = std::env::current_dir().ok();
    if here.as_deref() == Some(manifest.as_path()) && manifest.ends_with("benches") {
        if let Some(root) = manifest.parent() {
            let _ = std::env::set_current_dir(root);
        }
    }
}
