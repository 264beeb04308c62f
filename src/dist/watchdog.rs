//! No rank waits forever: [`Watched`] wraps an engine and times each of its calls; a call that
//! has not returned after the timeout (a peer died, hung or never started) ends this process
//! with a message naming the call and the wait. Under `mpirun` the job then ends everywhere:
//! mpirun stops every rank once one exits without finalizing MPI.

use super::DistError;
use super::collective::Collective;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit status of a rank the watchdog ends.
pub const TIMEOUT_EXIT: i32 = 3;

type Pending = Arc<Mutex<Option<(&'static str, Instant)>>>;

/// An engine whose every call is timed.
pub struct Watched<C> {
    inner: C,
    pending: Pending,
    max_chunk: Option<usize>,
}

impl<C: Collective> Watched<C> {
    /// Wraps `inner`; a call still waiting after `timeout` ends the process.
    pub fn new(inner: C, timeout: Duration) -> Self {
        let pending: Pending = Arc::new(Mutex::new(None));
        let watched = pending.clone();
        let rank = inner.rank();
        let engine = inner.engine();
        std::thread::Builder::new()
            .name("rowflow-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let late = match watched.lock() {
                        Ok(p) => p.and_then(|(op, t)| (t.elapsed() > timeout).then_some(op)),
                        Err(_) => None,
                    };
                    if let Some(op) = late {
                        eprintln!(
                            "error: rank {rank}: the {engine} {op} waited {:.0} s for the other \
                             ranks (--comm-timeout-s): a peer process died, hung or never \
                             started; see the other ranks' messages. Ending this rank.",
                            timeout.as_secs_f64()
                        );
                        std::process::exit(TIMEOUT_EXIT);
                    }
                }
            })
            .ok();
        Watched {
            inner,
            pending,
            max_chunk: None,
        }
    }

    /// Caps each call's size at `limit` elements (bytes for byte operations), so the tests
    /// drive the chunked rounds that counts past 2^31 take, with small batches.
    pub fn with_max_chunk(mut self, limit: Option<usize>) -> Self {
        self.max_chunk = limit.map(|l| l.max(1));
        self
    }

    fn timed<T>(&self, op: &'static str, f: impl FnOnce(&C) -> T) -> T {
        if let Ok(mut p) = self.pending.lock() {
            *p = Some((op, Instant::now()));
        }
        let out = f(&self.inner);
        if let Ok(mut p) = self.pending.lock() {
            *p = None;
        }
        out
    }
}

impl<C: Collective> Collective for Watched<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }
    fn max_chunk(&self) -> usize {
        let inner = self.inner.max_chunk();
        self.max_chunk.map_or(inner, |l| l.min(inner))
    }
    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<(), DistError> {
        self.timed("all-to-all", |c| {
            c.all_to_all_bytes(send, send_counts, recv, recv_counts)
        })
    }
    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<(), DistError> {
        self.timed("all-reduce", |c| c.all_reduce_f32(data))
    }
    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<(), DistError> {
        self.timed("all-reduce", |c| c.all_reduce_f64(data))
    }
    fn broadcast_bytes(&self, root: usize, data: &mut [u8]) -> Result<(), DistError> {
        self.timed("broadcast", |c| c.broadcast_bytes(root, data))
    }
    fn barrier(&self) -> Result<(), DistError> {
        self.timed("barrier", |c| c.barrier())
    }
    fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }
}

/// A failure injected into one rank of a test run (`ROWFLOW_DIST_FAULT`): the other ranks must
/// end with an error, never hang.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The rank that fails.
    pub rank: usize,
    /// The step before which it fails (0: before its first collective — a peer that never
    /// arrives).
    pub step: u64,
    /// Killed (SIGKILL) or hung (sleeps forever).
    pub kill: bool,
}

impl Fault {
    /// The environment variable holding `kill@RANK:STEP` or `hang@RANK:STEP`.
    pub const VAR: &'static str = "ROWFLOW_DIST_FAULT";

    /// The fault `ROWFLOW_DIST_FAULT` asks for, if any.
    pub fn from_env() -> Result<Option<Fault>, DistError> {
        match std::env::var(Self::VAR) {
            Ok(v) if !v.is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    fn parse(v: &str) -> Result<Fault, DistError> {
        let bad = || {
            DistError::Config(format!(
                "{}={v}: expected kill@RANK:STEP or hang@RANK:STEP",
                Self::VAR
            ))
        };
        let (kind, at) = v.split_once('@').ok_or_else(bad)?;
        let (rank, step) = at.split_once(':').ok_or_else(bad)?;
        Ok(Fault {
            rank: rank.parse().map_err(|_| bad())?,
            step: step.parse().map_err(|_| bad())?,
            kill: match kind {
                "kill" => true,
                "hang" => false,
                _ => return Err(bad()),
            },
        })
    }

    /// Fails this process if it is the fault's rank and `step` its step.
    #[allow(unsafe_code)] // one kill(2) call
    pub fn strike(fault: Option<Fault>, rank: usize, step: u64) {
        let Some(f) = fault.filter(|f| f.rank == rank && f.step == step) else {
            return;
        };
        eprintln!(
            "rank {rank}: {} before step {step} ({})",
            if f.kill { "killed" } else { "hung" },
            Self::VAR
        );
        if f.kill {
            // SAFETY: kill(2) on our own pid has no memory effects.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Fault;

    #[test]
    fn faults_parse_or_are_refused() {
        let f = Fault::parse("kill@2:5").unwrap();
        assert_eq!((f.rank, f.step, f.kill), (2, 5, true));
        assert!(!Fault::parse("hang@0:0").unwrap().kill);
        for bad in ["die@1:2", "kill@1", "kill@x:2", "kill"] {
            let e = Fault::parse(bad).unwrap_err().to_string();
            assert!(e.contains("kill@RANK:STEP"), "{bad}: {e}");
        }
    }
}
