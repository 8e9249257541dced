//! Builds the eBPF programs (agent-ebpf) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker, so the agent can embed the object. `cargo xtask setup` installs both.
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest).join("../agent-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", root.display()))?;
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed={root}/common/src");
    let ebpf = aya_build::Package {
        name: "shadowai-ebpf",
        root_dir: root,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
