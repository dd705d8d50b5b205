//! `kubectl exec`, `attach` and `port-forward` for Wasm containers.
//!
//! - exec runs the container's program once more as a new instance, with the container's env
//!   and mounts, the command as its argv, and the client's streams as its stdio;
//! - attach follows what the running guest writes (its log, as it is written) until it exits
//!   (Wasm guests read no stdin: the API refuses `stdin: true` for them);
//! - port-forward connects to the pod's address, where the node serves the guest's listeners.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use skiff_runtime_core::cri_log::{self, LogStream};
use skiff_streams::{BoxDuplex, Stdio};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};

use super::*;

/// Bytes a guest may have in flight to a slow client before its writes wait.
const WRITE_BUDGET: usize = 64 * 1024;
/// How often attach looks for new output.
const ATTACH_POLL: Duration = Duration::from_millis(50);

/// Ends the guest task if the session is dropped (the client went away).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One writer behind both of a guest's output streams.
#[derive(Clone)]
struct SharedWriter(Arc<Mutex<skiff_streams::BoxWrite>>);

impl SharedWriter {
    fn with<T>(
        &self,
        f: impl FnOnce(
            Pin<&mut (dyn tokio::io::AsyncWrite + Send + Sync + Unpin)>,
        ) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match self.0.lock() {
            Ok(mut w) => f(Pin::new(&mut **w)),
            Err(_) => Poll::Ready(Err(std::io::Error::other("output writer poisoned"))),
        }
    }
}

impl tokio::io::AsyncWrite for SharedWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.with(|w| w.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|w| w.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|w| w.poll_shutdown(cx))
    }
}

impl WasmRuntime {
    fn running_container(
        &self,
        id: &ContainerId,
    ) -> Result<(Arc<Program>, Arc<ContainerConfig>), RuntimeError> {
        let containers = self.inner.lock_containers();
        let c = containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        if !matches!(c.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::Other(format!("container {id} is not running")));
        }
        Ok((c.program.clone(), c.config.clone()))
    }

    fn is_running(&self, id: &ContainerId) -> bool {
        self.inner
            .lock_containers()
            .get(id)
            .is_some_and(|c| matches!(c.state, ContainerState::Running { .. }))
    }

    pub(super) async fn exec_streaming(
        &self,
        id: &ContainerId,
        cmd: &[String],
        io: Stdio,
    ) -> Result<i32, RuntimeError> {
        let (program, config) = self.running_container(id)?;
        if cmd.first().is_some_and(|c| c == "tar") {
            // What `kubectl cp` runs: a Wasm container has no tar, only its own module.
            return Err(RuntimeError::Unsupported(format!(
                "kubectl cp needs tar in the container, but WebAssembly container {:?} runs only its own module (image {}); share files through a volume instead",
                config.name, config.image
            )));
        }
        if matches!(&*program, Program::Http(_)) {
            return Err(RuntimeError::Unsupported(
                "this container is a wasi:http component: it has no command to run".into(),
            ));
        }
        let mut config = ContainerConfig::clone(&config);
        config.argv = cmd.to_vec();
        let services = self.service_directory();
        let mut builder = wasi_context(&config, &services).map_err(RuntimeError::Other)?;
        let Stdio { stdin, stdout, stderr, tty, .. } = io;
        if let Some(stdin) = stdin {
            builder.stdin(AsyncStdinStream::new(stdin));
        }
        match (stdout, stderr) {
            // A terminal has one output: the guest's stderr goes there too.
            (Some(out), _) if tty => {
                let shared = SharedWriter(Arc::new(Mutex::new(out)));
                builder.stdout(AsyncStdoutStream::new(WRITE_BUDGET, shared.clone()));
                builder.stderr(AsyncStdoutStream::new(WRITE_BUDGET, shared));
            }
            (out, err) => {
                if let Some(out) = out {
                    builder.stdout(AsyncStdoutStream::new(WRITE_BUDGET, out));
                }
                if let Some(err) = err {
                    builder.stderr(AsyncStdoutStream::new(WRITE_BUDGET, err));
                }
            }
        }
        let limiter = MemoryLimiter::new(config.memory_limit_bytes);
        let net = guest_net(&config, &services, self.guest_tls());
        let engine = self.inner.engine.clone();
        let task = self.guest_handle()?.spawn(async move {
            let (outcome, _) = run_command(&engine, &program, builder, limiter, net).await;
            outcome
        });
        let _abort = AbortOnDrop(task.abort_handle());
        let outcome =
            task.await.map_err(|e| RuntimeError::Other(format!("exec task failed: {e}")))?;
        match outcome {
            Outcome::Returned | Outcome::Exit(0) => Ok(0),
            Outcome::Exit(code) => Ok(code),
            Outcome::Failed => Ok(1),
            Outcome::Trap(_) => Ok(EXIT_TRAP),
            Outcome::CannotRun(m) => {
                Err(RuntimeError::Other(format!("cannot run {:?}: {m}", config.argv)))
            }
        }
    }

    pub(super) async fn attach_streaming(
        &self,
        id: &ContainerId,
        io: Stdio,
    ) -> Result<(), RuntimeError> {
        let (_, config) = self.running_container(id)?;
        let Stdio { mut stdout, mut stderr, tty, .. } = io;
        let path = config.log_path.clone();
        let io_err =
            |source| RuntimeError::Io { context: format!("reading {}", path.display()), source };
        let mut file = tokio::fs::File::open(&path).await.map_err(io_err)?;
        file.seek(std::io::SeekFrom::End(0)).await.map_err(io_err)?;
        let mut pending = Vec::new();
        let mut chunk = vec![0u8; 32 * 1024];
        let mut last_look = false;
        loop {
            let n = file.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                if last_look {
                    return Ok(());
                }
                // Once the guest has stopped, read what it wrote before it did, then end.
                last_look = !self.is_running(id);
                if !last_look {
                    tokio::time::sleep(ATTACH_POLL).await;
                }
                continue;
            }
            pending.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            while let Some(end) = pending[used..].iter().position(|b| *b == b'\n') {
                let line = &pending[used..used + end];
                used += end + 1;
                let Some(rec) = cri_log::parse_line(line) else { continue };
                let out = match rec.stream {
                    LogStream::Stderr if !tty => stderr.as_mut(),
                    _ => stdout.as_mut(),
                };
                if let Some(out) = out {
                    let mut data = rec.content.to_vec();
                    if !rec.partial {
                        data.push(b'\n');
                    }
                    // The client left: the session is over.
                    if out.write_all(&data).await.is_err() {
                        return Ok(());
                    }
                }
            }
            pending.drain(..used);
        }
    }

    pub(super) async fn port_forwarding(
        &self,
        id: &ContainerId,
        port: u16,
    ) -> Result<BoxDuplex, RuntimeError> {
        let ip = {
            let containers = self.inner.lock_containers();
            let c = containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
            c.config.pod_ip.clone()
        };
        let ip: std::net::IpAddr = ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| RuntimeError::Other("the pod has no address yet".into()))?;
        let conn = tokio::net::TcpStream::connect((ip, port)).await.map_err(|e| {
            RuntimeError::Other(format!("failed to connect to {ip}:{port} inside the pod: {e}"))
        })?;
        let _ = conn.set_nodelay(true);
        Ok(Box::new(conn))
    }
}
