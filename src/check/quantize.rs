//! Row quantization into the host store's precisions and back, both roundings, against the
//! CPU (stochastic rounding draws the same noise on every backend).

use super::kernels::both;
use super::{Checker, uniform};
use crate::device::cpu::CpuDevice;
use crate::device::{
    DequantizeRows, Device, DeviceError, DeviceExt, QuantizeRows, RowMove, StateRows,
};
use crate::precision::{Precision, Rounding};

/// Cache rows packed into each store precision (with Adagrad state) and unpacked into other
/// slots: within one quantization level of the CPU (bit-exact in practice).
pub fn quantize_rows<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    stochastic: bool,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for dim in [1usize, 3, 16, 64, 100, 128] {
        let (slots, n) = (300u32, 65usize);
        let cache: Vec<f32> = uniform(&mut r, slots as usize * dim)
            .iter()
            .map(|x| x * 0.1)
            .collect();
        let state: Vec<f32> = (0..slots).map(|i| i as f32).collect();
        let picked: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 11) % slots).collect();
        let ids: Vec<u32> = (0..n as u32).map(|i| i * 1_000_003).collect();
        for precision in [
            Precision::Fp32,
            Precision::Fp16,
            Precision::Int8,
            Precision::Int4,
        ] {
            let rounding = if stochastic {
                Rounding::Stochastic
            } else {
                Rounding::Nearest
            };
            let words = precision.row_words(dim);
            let (got, want) = both!(dev, cpu, |d| {
                let (cb, sb, ib) = (
                    d.buffer_from_f32(&cache)?,
                    d.buffer_from_u32(&picked)?,
                    d.buffer_from_u32(&ids)?,
                );
                let (packed, csb, stb) = (
                    d.alloc_elems(n * words)?,
                    d.buffer_from_f32(&state)?,
                    d.alloc_elems(n)?,
                );
                d.quantize_rows(&QuantizeRows {
                    moved: RowMove {
                        packed: &packed,
                        slots: &sb,
                        cache: &cb,
                        cache_rows: slots,
                        rows: n as u32,
                        dim: dim as u32,
                        precision,
                        state: Some(StateRows {
                            cache_state: &csb,
                            staged: &stb,
                        }),
                    },
                    row_ids: &ib,
                    rounding,
                    seed: 3,
                    step: 9,
                })?;
                // Round trip into a second cache, at other slots.
                let back = d.alloc_elems(slots as usize * dim)?;
                let other: Vec<u32> = picked.iter().map(|s| slots - 1 - s).collect();
                let ob = d.buffer_from_u32(&other)?;
                let state2 = d.alloc_elems(slots as usize)?;
                d.dequantize_rows(&DequantizeRows {
                    moved: RowMove {
                        packed: &packed,
                        slots: &ob,
                        cache: &back,
                        cache_rows: slots,
                        rows: n as u32,
                        dim: dim as u32,
                        precision,
                        state: Some(StateRows {
                            cache_state: &state2,
                            staged: &stb,
                        }),
                    },
                })?;
                let mut out = d.read_f32(&back, 0..slots as usize * dim)?;
                out.extend(d.read_f32(&state2, 0..slots as usize)?);
                out
            });
            // One quantization level of these rows (range 0.2) at most: INT4 0.2/15.
            let level = match precision {
                Precision::Int4 => 0.2 / 15.0,
                Precision::Int8 => 0.2 / 255.0,
                Precision::Fp16 => 1e-4,
                Precision::Fp32 => 0.0,
            };
            ck.compare(
                "quantize_rows+dequantize_rows",
                &format!("quantize+dequantize {precision:?} stochastic={stochastic} dim {dim}"),
                &got,
                &want,
                (0.0, 1.01 * level + 1e-7),
            );
        }
    }
    Ok(())
}
