//! `pgpatrol history`: failovers and switchovers, one line per timeline change.

use clap::Args;

use super::common::{write_structured, ClusterArgs, Format};
use super::Outcome;
use crate::output::table;
use crate::output::term::{ColorChoice, Look};

/// Show the timeline history: when each timeline ended, why, and who became leader.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: Format,
}

impl HistoryArgs {
    pub async fn run(
        self,
        color: ColorChoice,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<Outcome> {
        let entries = self.cluster.source().await?.history().await?;
        match self.format {
            Format::Table => table::history(out, &entries, &Look::stdout(color))?,
            f => write_structured(out, f, &entries)?,
        }
        Ok(Outcome::Ok)
    }
}
