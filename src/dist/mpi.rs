//! The MPI engine (feature `mpi`): rsmpi over the system's MPI (Debian's OpenMPI). One process
//! per rank, launched by `mpirun`; MPI's default error handler ends the whole job on a
//! communication error, and [`super::watchdog`] ends a rank whose collective never completes.

use super::DistError;
use super::collective::Collective;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// The world communicator of an `mpirun` job.
pub struct Mpi {
    world: SimpleCommunicator,
    // Dropped last: finalizes MPI.
    _universe: Universe,
}

impl Mpi {
    /// Initializes MPI (once per process) and takes the world communicator.
    ///
    /// Errors: MPI was initialized already in this process.
    pub fn init() -> Result<Mpi, DistError> {
        let universe = mpi::initialize().ok_or_else(|| {
            DistError::Engine("MPI is initialized already in this process".into())
        })?;
        let world = universe.world();
        Ok(Mpi {
            world,
            _universe: universe,
        })
    }

    /// The world communicator.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }
}

/// Counts and displacements of one side of an all-to-all, as MPI's `int`s.
fn layout(counts: &[usize]) -> Result<(Vec<i32>, Vec<i32>), DistError> {
    let too_big = || DistError::Engine("an all-to-all chunk exceeds MPI's int counts".into());
    let c: Vec<i32> = counts
        .iter()
        .map(|&x| i32::try_from(x).map_err(|_| too_big()))
        .collect::<Result<_, _>>()?;
    let mut d = Vec::with_capacity(c.len());
    let mut at = 0i32;
    for &x in &c {
        d.push(at);
        at = at.checked_add(x).ok_or_else(too_big)?;
    }
    Ok((c, d))
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn engine(&self) -> &'static str {
        "mpi"
    }
    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<(), DistError> {
        // Empty slices share one dangling address, and OpenMPI refuses a send buffer equal to
        // the receive buffer: give an empty side an address of its own.
        let (spare_s, mut spare_r) = ([0u8; 1], [0u8; 1]);
        let send = if send.is_empty() { &spare_s[..0] } else { send };
        let recv = if recv.is_empty() {
            &mut spare_r[..0]
        } else {
            recv
        };
        let (sc, sd) = layout(send_counts)?;
        let (rc, rd) = layout(recv_counts)?;
        let sbuf = Partition::new(send, sc, sd);
        let mut rbuf = PartitionMut::new(recv, rc, rd);
        self.world.all_to_all_varcount_into(&sbuf, &mut rbuf);
        Ok(())
    }
    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<(), DistError> {
        let send = data.to_vec();
        self.world
            .all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<(), DistError> {
        let send = data.to_vec();
        self.world
            .all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }
    fn broadcast_bytes(&self, root: usize, data: &mut [u8]) -> Result<(), DistError> {
        self.world.process_at_rank(root as i32).broadcast_into(data);
        Ok(())
    }
    fn barrier(&self) -> Result<(), DistError> {
        self.world.barrier();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
