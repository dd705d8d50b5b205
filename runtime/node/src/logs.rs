//! `pods/log`: reads a container's CRI log file, applies `PodLogOptions`, and follows it while
//! the container runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::BoxStream;
use skiff_api::logs::{LogError, LogRequest, PodLogSource};
use skiff_runtime_core::cri_log;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::state::NodeState;

/// Log file of one run of a container: `<pods>/<ns>_<pod>_<uid>/<container>/<restart>.log`.
pub fn log_path(
    pods_dir: &std::path::Path,
    ns: &str,
    pod: &str,
    uid: &str,
    container: &str,
    restart: u32,
) -> PathBuf {
    pods_dir.join(format!("{ns}_{pod}_{uid}")).join(container).join(format!("{restart}.log"))
}

pub struct NodeLogs {
    pub(crate) pods_dir: PathBuf,
    pub(crate) state: Arc<NodeState>,
}

/// Turns CRI records into plain log text, joining partial records.
struct Renderer {
    timestamps: bool,
    since: Option<DateTime<Utc>>,
    partial: Vec<u8>,
    partial_time: Option<DateTime<Utc>>,
}

impl Renderer {
    fn feed(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Some(rec) = cri_log::parse_line(raw) else { continue };
            if self.partial.is_empty() {
                self.partial_time = Some(rec.time);
            }
            self.partial.extend_from_slice(rec.content);
            if rec.partial {
                continue;
            }
            let time = self.partial_time.take().unwrap_or(rec.time);
            let content = std::mem::take(&mut self.partial);
            if self.since.is_some_and(|s| time < s) {
                continue;
            }
            let mut line = Vec::with_capacity(content.len() + 40);
            if self.timestamps {
                line.extend_from_slice(time.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(&content);
            line.push(b'\n');
            out.push(line);
        }
    }
}

#[async_trait]
impl PodLogSource for NodeLogs {
    async fn logs(
        &self,
        req: LogRequest,
    ) -> Result<BoxStream<'static, Result<Bytes, std::io::Error>>, LogError> {
        let run = self.state.container_run(&req.pod_uid, &req.container);
        let Some((restart, running)) = run else {
            return Err(LogError::BadRequest(format!(
                "container \"{}\" in pod \"{}\" is waiting to start: ContainerCreating",
                req.container, req.pod
            )));
        };
        let (restart, follow) = if req.previous {
            if restart == 0 {
                return Err(LogError::BadRequest(format!(
                    "previous terminated container \"{}\" in pod \"{}\" not found",
                    req.container, req.pod
                )));
            }
            (restart - 1, false)
        } else {
            (restart, req.follow && running)
        };
        let path = log_path(
            &self.pods_dir,
            &req.namespace,
            &req.pod,
            &req.pod_uid,
            &req.container,
            restart,
        );
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(LogError::Internal(format!("reading {}: {e}", path.display()))),
        };
        let since = match (&req.since_time, req.since_seconds) {
            (Some(t), _) => DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc)),
            (None, Some(s)) => Some(Utc::now() - chrono::Duration::seconds(s as i64)),
            _ => None,
        };
        let mut renderer =
            Renderer { timestamps: req.timestamps, since, partial: Vec::new(), partial_time: None };
        // Only complete records count; a torn last line is read again when following.
        let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        let mut lines = Vec::new();
        renderer.feed(&data[..complete], &mut lines);
        if let Some(n) = req.tail_lines {
            let skip = lines.len().saturating_sub(n as usize);
            lines.drain(..skip);
        }
        let mut budget = req.limit_bytes.unwrap_or(u64::MAX);
        let mut head = Vec::new();
        for l in lines {
            if budget == 0 {
                break;
            }
            let take = (l.len() as u64).min(budget) as usize;
            budget -= take as u64;
            head.extend_from_slice(&l[..take]);
        }
        let first = futures::stream::iter(std::iter::once(Ok(Bytes::from(head))));
        if !follow || budget == 0 {
            return Ok(Box::pin(first));
        }
        let state = self.state.clone();
        let (uid, container) = (req.pod_uid.clone(), req.container.clone());
        let tail = futures::stream::unfold(
            (renderer, complete as u64, budget, path, false),
            move |(mut renderer, mut offset, mut budget, path, done)| {
                let state = state.clone();
                let (uid, container) = (uid.clone(), container.clone());
                async move {
                    if done || budget == 0 {
                        return None;
                    }
                    loop {
                        let still_running =
                            state.container_run(&uid, &container) == Some((restart, true));
                        let mut chunk = Vec::new();
                        if let Ok(mut f) = tokio::fs::File::open(&path).await
                            && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
                        {
                            let _ = f.read_to_end(&mut chunk).await;
                        }
                        let complete = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                        if complete > 0 {
                            offset += complete as u64;
                            let mut lines = Vec::new();
                            renderer.feed(&chunk[..complete], &mut lines);
                            let mut out = Vec::new();
                            for l in lines {
                                let take = (l.len() as u64).min(budget) as usize;
                                budget -= take as u64;
                                out.extend_from_slice(&l[..take]);
                            }
                            if !out.is_empty() {
                                return Some((
                                    Ok(Bytes::from(out)),
                                    (renderer, offset, budget, path, !still_running),
                                ));
                            }
                        }
                        if !still_running {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                }
            },
        );
        Ok(Box::pin(futures::StreamExt::chain(first, tail)))
    }
}
