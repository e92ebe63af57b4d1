//! `pgpatrol lab`: a real local Patroni cluster. (Skeleton: the lab is built in its own change.)

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Show the lab's members and processes.
    Status,
}

impl LabCommand {
    pub async fn run(self) -> anyhow::Result<super::Outcome> {
        anyhow::bail!("the lab is not built yet")
    }
}
