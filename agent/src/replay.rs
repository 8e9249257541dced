//! `shadowai-agent replay FILE`: a pcap/pcapng capture through the same decode → correlate
//! pipeline the live agent runs, printed as the same JSON lines as `watch --json` (without
//! process identity: a capture has none).

use std::io::Write;
use std::path::Path;

use shadowai_decode::replay::Replay;

use crate::correlate::{Clock, Correlator};
use crate::error::AgentError;
use crate::output::ocsf::Device;
use crate::watch::{hostname, write_event};

/// What a replay did, for the summary line.
#[derive(Debug, Default)]
pub struct Summary {
    pub packets: u64,
    pub events: u64,
    /// The reader error that ended the capture early (what and where), if any.
    pub error: Option<String>,
    /// What the replay's own classification skipped or forgot (malformed frames, frames
    /// of unknown link types, flows forgotten at its bound, fragments given up).
    pub stats: shadowai_decode::replay::ReplayStats,
}

pub fn run(path: &Path, json: bool, out: &mut impl Write) -> Result<Summary, AgentError> {
    let io = |source| AgentError::Io {
        what: format!("opening {}", path.display()),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut replay =
        Replay::new(std::io::BufReader::new(file)).map_err(|e| AgentError::Capture {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let device = Device {
        hostname: hostname(),
    };
    let mut corr = Correlator::new(Clock::identity());
    let mut events = Vec::new();
    let mut summary = Summary::default();
    let mut last_ts = 0;
    for item in replay.by_ref() {
        match item {
            Ok(p) => {
                summary.packets += 1;
                last_ts = last_ts.max(p.ts_ns);
                corr.on_packet(&p.as_packet_in(), None, &mut events);
            }
            Err(e) => {
                summary.error = Some(format!("{}: {e}", path.display()));
                break;
            }
        }
        for e in events.drain(..) {
            summary.events += 1;
            write_event(out, &e, json, &device).map_err(|source| AgentError::Io {
                what: "writing output".into(),
                source,
            })?;
        }
    }
    corr.tick(last_ts.saturating_add(3_600_000_000_000));
    summary.stats = replay.classifier.stats.clone();
    Ok(summary)
}
