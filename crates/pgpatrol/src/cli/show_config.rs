//! `pgpatrol show-config`: the cluster's dynamic configuration, as stored in the DCS.

use clap::Args;

use super::common::{write_structured, ClusterArgs, Format};
use super::Outcome;

/// Show the dynamic configuration (what `patronictl show-config` shows). YAML by default.
#[derive(Debug, Args)]
pub struct ShowConfigArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format (`table` is YAML here).
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub format: Format,
}

impl ShowConfigArgs {
    pub async fn run(self, out: &mut impl std::io::Write) -> anyhow::Result<Outcome> {
        let config = self.cluster.source().await?.config().await?;
        let format = if self.format == Format::Table {
            Format::Yaml
        } else {
            self.format
        };
        write_structured(out, format, &config)?;
        Ok(Outcome::Ok)
    }
}
