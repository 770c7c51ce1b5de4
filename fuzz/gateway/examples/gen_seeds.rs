//! Writes the seed corpus: `cargo run --manifest-path fuzz/gateway/Cargo.toml --no-default-features
//! --example gen_seeds`. Replaces the generated files in `seeds/<target>/`; files named
//! `crash-*` (inputs that once crashed a target) are kept.
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, seeds) in sparkgate_fuzz_gateway::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !name.starts_with("crash-") {
                std::fs::remove_file(&path)?;
            }
        }
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
