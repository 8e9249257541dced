//! shadowai: the admin CLI (being built).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("shadowai: no commands yet")
}
