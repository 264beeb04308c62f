//! The NCCL engine (feature `nccl`): one process per GPU, launched by `mpirun` (features
//! `mpi,nccl`); rank 0 makes NCCL's unique id and MPI broadcasts it; every collective then runs
//! on the GPUs through cudarc's NCCL bindings (loaded at run time, so this compiles everywhere).
//! NCCL has no all-to-all: it is a group of one send and one receive per peer, as PyTorch
//! writes it; no barrier either: a one-value all-reduce stands in. Small control messages
//! (counts, the config hash) use NCCL too, so every byte of a step crosses one engine.
//!
//! Without mpirun (or a build without `mpi`) [`Nccl::single`] makes a one-rank communicator:
//! the GPU machine's self-test runs it against [`super::Local`] (scripts/device-check.sh).

use super::DistError;
use super::collective::Collective;
#[cfg(feature = "mpi")]
use super::mpi::Mpi;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};
use std::sync::Arc;

/// A NCCL communicator over the ranks of an MPI job, one GPU each.
pub struct Nccl {
    comm: Comm,
    stream: Arc<CudaStream>,
    // Kept alive: dropping it finalizes MPI.
    #[cfg(feature = "mpi")]
    _mpi: Option<Mpi>,
}

fn nccl_err(what: &str) -> impl Fn(cudarc::nccl::result::NcclError) -> DistError + '_ {
    move |e| DistError::Engine(format!("NCCL {what} failed: {e:?}"))
}

fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> DistError + '_ {
    move |e| DistError::Engine(format!("CUDA {what} failed: {e}"))
}

impl Nccl {
    /// Joins the MPI job `mpi` on GPU `ordinal` (usually the rank's index on its host).
    ///
    /// Errors: no CUDA driver or GPU, no NCCL library, or NCCL's initialisation failing.
    #[cfg(feature = "mpi")]
    pub fn init(mpi: Mpi, ordinal: usize) -> Result<Nccl, DistError> {
        let stream = Self::stream(ordinal)?;
        let mut bytes = vec![0u8; 128];
        if mpi.rank() == 0 {
            let id = Id::new().map_err(nccl_err("unique id"))?;
            for (b, &c) in bytes.iter_mut().zip(id.internal()) {
                *b = c as u8;
            }
        }
        mpi.broadcast_bytes(0, &mut bytes)?;
        let mut raw = [0 as std::ffi::c_char; 128];
        for (c, &b) in raw.iter_mut().zip(&bytes) {
            *c = b as std::ffi::c_char;
        }
        let comm = Comm::from_rank(stream.clone(), mpi.rank(), mpi.size(), Id::uninit(raw))
            .map_err(nccl_err("communicator init"))?;
        Ok(Nccl {
            comm,
            stream,
            _mpi: Some(mpi),
        })
    }

    /// A one-rank communicator on GPU `ordinal`, no MPI needed.
    ///
    /// Errors: as [`Nccl::init`].
    pub fn single(ordinal: usize) -> Result<Nccl, DistError> {
        let stream = Self::stream(ordinal)?;
        let id = Id::new().map_err(nccl_err("unique id"))?;
        let comm =
            Comm::from_rank(stream.clone(), 0, 1, id).map_err(nccl_err("communicator init"))?;
        Ok(Nccl {
            comm,
            stream,
            #[cfg(feature = "mpi")]
            _mpi: None,
        })
    }

    fn stream(ordinal: usize) -> Result<Arc<CudaStream>, DistError> {
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("context creation"))?;
        Ok(ctx.default_stream())
    }

    fn upload<T: cudarc::driver::DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>, DistError> {
        self.stream
            .clone_htod(data)
            .map_err(cuda_err("host-to-device copy"))
    }

    fn reduce<T>(&self, data: &mut [T]) -> Result<(), DistError>
    where
        T: cudarc::driver::DeviceRepr + cudarc::nccl::NcclType,
    {
        if data.is_empty() {
            return Ok(());
        }
        let mut buf = self.upload(data)?;
        self.comm
            .all_reduce_in_place(&mut buf, &ReduceOp::Sum)
            .map_err(nccl_err("all-reduce"))?;
        self.stream
            .memcpy_dtoh(&buf, data)
            .map_err(cuda_err("device-to-host copy"))?;
        self.stream.synchronize().map_err(cuda_err("synchronize"))
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn size(&self) -> usize {
        self.comm.world_size()
    }
    fn engine(&self) -> &'static str {
        "nccl"
    }
    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<(), DistError> {
        // cudarc never hands out an empty buffer: pad by one byte.
        let mut padded = send.to_vec();
        padded.push(0);
        let sbuf = self.upload(&padded)?;
        let mut rbufs: Vec<CudaSlice<u8>> = recv_counts
            .iter()
            .map(|&c| self.stream.alloc_zeros::<u8>(c.max(1)))
            .collect::<Result<_, _>>()
            .map_err(cuda_err("allocation"))?;
        {
            let mut group = self.comm.group();
            let mut at = 0;
            for (p, rb) in rbufs.iter_mut().enumerate() {
                let peer = p as i32;
                if send_counts[p] > 0 {
                    group
                        .send(sbuf.slice(at..at + send_counts[p]), peer)
                        .map_err(nccl_err("send"))?;
                }
                at += send_counts[p];
                if recv_counts[p] > 0 {
                    group
                        .recv(rb.slice_mut(..recv_counts[p]), peer)
                        .map_err(nccl_err("recv"))?;
                }
            }
        }
        let mut at = 0;
        for (p, rb) in rbufs.iter().enumerate() {
            let c = recv_counts[p];
            if c > 0 {
                self.stream
                    .memcpy_dtoh(&rb.slice(..c), &mut recv[at..at + c])
                    .map_err(cuda_err("device-to-host copy"))?;
            }
            at += c;
        }
        self.stream.synchronize().map_err(cuda_err("synchronize"))
    }
    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<(), DistError> {
        self.reduce(data)
    }
    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<(), DistError> {
        self.reduce(data)
    }
    fn broadcast_bytes(&self, root: usize, data: &mut [u8]) -> Result<(), DistError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut buf = self.upload(data)?;
        self.comm
            .broadcast_in_place(&mut buf, root as i32)
            .map_err(nccl_err("broadcast"))?;
        self.stream
            .memcpy_dtoh(&buf, data)
            .map_err(cuda_err("device-to-host copy"))?;
        self.stream.synchronize().map_err(cuda_err("synchronize"))
    }
    fn barrier(&self) -> Result<(), DistError> {
        self.reduce(&mut [0f32])
    }
    fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self._mpi {
            mpi.abort(code)
        }
        std::process::exit(code)
    }
}
