//! One table's inputs for a batch on the device: its lookups, bag offsets and unique-row map,
//! in buffers reused batch after batch.

use crate::data::RowMap;
use crate::device::{BagForward, BagShape, Device, DeviceError, DeviceVec, Pooling, Strided};

/// One table's inputs for the current batch, on the device (also a DHE feature's, whose
/// "table" is its batch of computed vectors).
pub struct BatchInputs<D: Device> {
    /// `[lookups]` u32 rows.
    pub indices: DeviceVec<D>,
    /// `[bags + 1]` u32 bag offsets.
    pub offsets: DeviceVec<D>,
    /// The unique-row map: rows, where each row's bags start, the bags.
    pub unique_rows: DeviceVec<D>,
    /// See `unique_rows`.
    pub row_starts: DeviceVec<D>,
    /// See `unique_rows`.
    pub bag_ids: DeviceVec<D>,
    /// Bags of the current batch.
    pub bags: usize,
    /// Unique rows of the current batch.
    pub unique: usize,
    /// Whether the unique-row map of the current batch is uploaded (a training batch).
    pub has_map: bool,
}

impl<D: Device> BatchInputs<D> {
    /// Room for batches of `batch` bags (buffers grow when a batch needs more).
    pub fn new(dev: &D, batch: usize) -> Result<Self, DeviceError> {
        Ok(BatchInputs {
            indices: DeviceVec::new(dev, batch * 4)?,
            offsets: DeviceVec::new(dev, batch + 1)?,
            unique_rows: DeviceVec::new(dev, batch * 4)?,
            row_starts: DeviceVec::new(dev, batch * 4 + 1)?,
            bag_ids: DeviceVec::new(dev, batch * 4)?,
            bags: 0,
            unique: 0,
            has_map: false,
        })
    }

    /// Device bytes allocated.
    pub fn bytes(&self) -> u64 {
        self.indices.bytes()
            + self.offsets.bytes()
            + self.unique_rows.bytes()
            + self.row_starts.bytes()
            + self.bag_ids.bytes()
    }

    /// Uploads a batch's lookups (`indices`, renamed or not) and its bag `offsets`.
    pub fn upload_lookups(
        &mut self,
        dev: &D,
        indices: &[u32],
        offsets: &[u32],
    ) -> Result<(), DeviceError> {
        self.indices.upload_elems(dev, indices)?;
        self.offsets.upload_elems(dev, offsets)?;
        self.bags = offsets.len() - 1;
        self.has_map = false;
        Ok(())
    }

    /// Uploads the unique-row map the fused backward walks.
    pub fn upload_map(&mut self, dev: &D, m: &RowMap) -> Result<(), DeviceError> {
        self.unique_rows.upload_elems(dev, &m.unique_rows)?;
        self.row_starts.upload_elems(dev, &m.row_starts)?;
        self.bag_ids.upload_elems(dev, &m.bag_ids)?;
        self.unique = m.unique();
        self.has_map = true;
        Ok(())
    }

    /// Pools the uploaded lookups from `table` (`rows` rows of `dim`) into vector `at` of
    /// `out`, laid out `[bags, vectors, dim]` (`stride = vectors · dim`).
    #[allow(clippy::too_many_arguments)]
    pub fn pool(
        &self,
        dev: &D,
        (table, rows): (&D::Buffer, u32),
        dim: u32,
        pooling: Pooling,
        out: &D::Buffer,
        stride: u32,
        at: u32,
    ) -> Result<(), DeviceError> {
        dev.bag_forward(&BagForward {
            table,
            indices: self.indices.buffer(),
            offsets: self.offsets.buffer(),
            shape: BagShape {
                rows,
                dim,
                bags: self.bags as u32,
                pooling,
            },
            out: Strided {
                buffer: out,
                stride,
                offset: at * dim,
            },
        })
    }
}
