//! The collective operations a distributed run needs, over an existing engine: [`Local`] (one
//! process), `Mpi` (feature `mpi`: rsmpi over OpenMPI) and `Nccl` (feature `nccl`: cudarc's
//! NCCL, its unique id broadcast over MPI).
//!
//! An engine implements four primitives on bytes and `f32`s whose counts fit its integer type
//! ([`Collective::max_chunk`]); [`CollectiveExt`] builds the operations the run uses on top of
//! them, chunking any exchange past that limit into rounds, so no count ever overflows MPI's or
//! NCCL's `int`.

use super::DistError;

/// Bytes an engine moves in one call, at most: MPI counts and displacements are C `int`s.
pub const MAX_CHUNK: usize = (1 << 31) - 1;

/// The primitives of one engine. Every rank must call the same operations in the same order.
pub trait Collective {
    /// This process's rank, `0 .. size`.
    fn rank(&self) -> usize;
    /// Ranks in the run.
    fn size(&self) -> usize;
    /// The engine's name, for messages (`local`, `mpi`, `nccl`).
    fn engine(&self) -> &'static str;
    /// Most bytes (or elements) one primitive call may carry per buffer.
    fn max_chunk(&self) -> usize {
        MAX_CHUNK
    }
    /// All-to-all with variable counts: `send` holds `send_counts[p]` bytes for rank `p`, in
    /// rank order; `recv` gets `recv_counts[p]` bytes from rank `p`, in rank order. Every count
    /// and their sums are at most [`Collective::max_chunk`].
    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<(), DistError>;
    /// Sums `data` element-wise over all ranks, in place (at most `max_chunk` elements).
    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<(), DistError>;
    /// Sums `data` element-wise over all ranks, in place (at most `max_chunk` elements).
    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<(), DistError>;
    /// Copies `root`'s `data` to every rank (at most `max_chunk` bytes; same length everywhere).
    fn broadcast_bytes(&self, root: usize, data: &mut [u8]) -> Result<(), DistError>;
    /// Waits until every rank has called it.
    fn barrier(&self) -> Result<(), DistError>;
    /// Ends this process with `code` and, where the engine can, every other rank of the job at
    /// once (MPI_Abort) rather than at their watchdogs' timeouts.
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The operations built on the primitives: typed, and chunked past the engine's limit.
pub trait CollectiveExt: Collective {
    /// All-to-all of `u64` counts, one per peer: returns what each peer sent this rank.
    fn exchange_counts(&self, counts: &[u64]) -> Result<Vec<u64>, DistError> {
        let n = self.size();
        assert_eq!(counts.len(), n, "one count per rank");
        let mut recv = vec![0u64; n];
        let each = vec![8; n];
        self.all_to_all_bytes(
            bytemuck::cast_slice(counts),
            &each,
            bytemuck::cast_slice_mut(&mut recv),
            &each,
        )?;
        Ok(recv)
    }

    /// All-to-all with variable counts of plain values: `send` holds `counts[p]` values for
    /// rank `p`, in rank order. Exchanges the counts first, then the values in rounds of at
    /// most `max_chunk` bytes per call. Returns the values received, in rank order, and how
    /// many came from each rank.
    fn all_to_all_v<T: bytemuck::Pod>(
        &self,
        send: &[T],
        counts: &[usize],
    ) -> Result<(Vec<T>, Vec<usize>), DistError> {
        let n = self.size();
        let size = std::mem::size_of::<T>();
        assert_eq!(counts.len(), n, "one count per rank");
        assert_eq!(
            counts.iter().sum::<usize>(),
            send.len(),
            "counts cover send"
        );
        // With each count goes the sender's largest, so every rank learns the largest count of
        // the exchange and runs the same number of rounds.
        let my_max = counts.iter().max().copied().unwrap_or(0) as u64;
        let pairs: Vec<u64> = counts.iter().flat_map(|&c| [c as u64, my_max]).collect();
        let mut got = vec![0u64; 2 * n];
        let each = vec![16; n];
        self.all_to_all_bytes(
            bytemuck::cast_slice(&pairs),
            &each,
            bytemuck::cast_slice_mut(&mut got),
            &each,
        )?;
        let theirs: Vec<usize> = got.iter().step_by(2).map(|&c| c as usize).collect();
        let global_max = got.iter().skip(1).step_by(2).max().copied().unwrap_or(0) as usize;
        let mut recv = vec![T::zeroed(); theirs.iter().sum()];
        let send_bytes: &[u8] = bytemuck::cast_slice(send);
        let recv_bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut recv);
        // Each round moves at most `per_peer` bytes to and from every peer, whole values only,
        // so one round's sums stay within the limit too.
        let per_peer = (self.max_chunk() / n / size).max(1) * size;
        let starts = |c: &[usize]| -> Vec<usize> {
            c.iter()
                .scan(0, |s, &x| {
                    let at = *s;
                    *s += x * size;
                    Some(at)
                })
                .collect()
        };
        let (send_at, recv_at) = (starts(counts), starts(&theirs));
        let mut done = 0usize; // bytes per peer already moved
        let longest = global_max * size;
        loop {
            let take = |c: &[usize]| -> Vec<usize> {
                c.iter()
                    .map(|&x| (x * size).saturating_sub(done).min(per_peer))
                    .collect()
            };
            let (sc, rc) = (take(counts), take(&theirs));
            let mut sbuf = Vec::with_capacity(sc.iter().sum());
            for p in (0..n).filter(|&p| sc[p] > 0) {
                sbuf.extend_from_slice(&send_bytes[send_at[p] + done..][..sc[p]]);
            }
            let mut rbuf = vec![0u8; rc.iter().sum()];
            self.all_to_all_bytes(&sbuf, &sc, &mut rbuf, &rc)?;
            let mut at = 0;
            for p in (0..n).filter(|&p| rc[p] > 0) {
                recv_bytes[recv_at[p] + done..][..rc[p]].copy_from_slice(&rbuf[at..at + rc[p]]);
                at += rc[p];
            }
            done += per_peer;
            if done >= longest {
                break;
            }
        }
        Ok((recv, theirs))
    }

    /// Sums `data` over all ranks in place, in chunks of at most `max_chunk` elements.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
        for chunk in data.chunks_mut(self.max_chunk().max(1)) {
            self.all_reduce_f32(chunk)?;
        }
        Ok(())
    }

    /// Sums `data` over all ranks in place, in chunks of at most `max_chunk` elements.
    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<(), DistError> {
        for chunk in data.chunks_mut(self.max_chunk().max(1)) {
            self.all_reduce_f64(chunk)?;
        }
        Ok(())
    }

    /// Copies `root`'s bytes to every rank; the other ranks' `data` may have any length.
    fn broadcast(&self, root: usize, data: &mut Vec<u8>) -> Result<(), DistError> {
        let mut len = (data.len() as u64).to_le_bytes();
        self.broadcast_bytes(root, &mut len)?;
        data.resize(u64::from_le_bytes(len) as usize, 0);
        for chunk in data.chunks_mut(self.max_chunk().max(1)) {
            self.broadcast_bytes(root, chunk)?;
        }
        Ok(())
    }

    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, DistError> {
        self.exchange_counts(&vec![value; self.size()])
    }
}

impl<C: Collective + ?Sized> CollectiveExt for C {}

/// One process alone: every collective is a copy. Used by single-process runs of the
/// distributed code path and by the tests, as the reference every engine must agree with.
#[derive(Debug, Default)]
pub struct Local {
    /// Per-call limit, lowered by tests to exercise chunking.
    max_chunk: Option<usize>,
}

impl Local {
    /// The one-rank engine.
    pub fn new() -> Self {
        Local::default()
    }

    /// The one-rank engine whose primitives take at most `limit` bytes per call (to test the
    /// chunking that real engines need past 2^31).
    pub fn with_max_chunk(limit: usize) -> Self {
        Local {
            max_chunk: Some(limit.max(1)),
        }
    }

    fn check(&self, what: &str, len: usize) -> Result<(), DistError> {
        if len > self.max_chunk() {
            return Err(DistError::Engine(format!(
                "local {what} of {len} exceeds the engine's limit of {}",
                self.max_chunk()
            )));
        }
        Ok(())
    }
}

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn engine(&self) -> &'static str {
        "local"
    }
    fn max_chunk(&self) -> usize {
        self.max_chunk.unwrap_or(MAX_CHUNK)
    }
    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<(), DistError> {
        self.check("all-to-all", send.len())?;
        assert_eq!(
            (send_counts, recv_counts),
            (&[send.len()][..], &[recv.len()][..])
        );
        recv.copy_from_slice(send);
        Ok(())
    }
    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<(), DistError> {
        self.check("all-reduce", data.len())
    }
    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<(), DistError> {
        self.check("all-reduce", data.len())
    }
    fn broadcast_bytes(&self, _root: usize, data: &mut [u8]) -> Result<(), DistError> {
        self.check("broadcast", data.len())
    }
    fn barrier(&self) -> Result<(), DistError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_all_to_all_returns_what_was_sent() {
        let data: Vec<u32> = (0..1000).collect();
        // The counts message (16 bytes per peer) is never chunked: limits start there.
        for limit in [16, 20, 100, 4000, MAX_CHUNK] {
            let c = Local::with_max_chunk(limit);
            let (got, counts) = c.all_to_all_v(&data, &[data.len()]).unwrap();
            assert_eq!((got, counts), (data.clone(), vec![1000]), "limit {limit}");
        }
        let mut v = vec![1.5f32; 10];
        Local::with_max_chunk(3).all_reduce_sum(&mut v).unwrap();
        assert_eq!(v, vec![1.5; 10]);
        // The length (8 bytes) goes first, whole; then the bytes in chunks.
        let mut b = b"a plan of 24 bytes or so".to_vec();
        Local::with_max_chunk(8).broadcast(0, &mut b).unwrap();
        assert_eq!(b, b"a plan of 24 bytes or so");
    }

    #[test]
    fn an_empty_exchange_moves_nothing() {
        let (got, counts) = Local::new().all_to_all_v::<f32>(&[], &[0]).unwrap();
        assert!(got.is_empty());
        assert_eq!(counts, vec![0]);
    }
}
