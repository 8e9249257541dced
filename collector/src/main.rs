//! shadowai-collector (being built; see issue "The collector").
fn main() -> anyhow::Result<()> {
    anyhow::bail!("shadowai-collector: the server is not built yet")
}
