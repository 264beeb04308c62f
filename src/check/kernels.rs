//! Embedding, gemm, loss and optimizer kernels, and transfers, against the CPU.

use super::{Checker, EXACT, SUM, TRANSCENDENTAL, random_bags, uniform};
use crate::data::RowMap;
use crate::device::cpu::CpuDevice;
use crate::device::{
    BagBackward, BagForward, BagShape, BceLoss, DenseUpdate, Device, DeviceError, DeviceExt, Gemm,
    Optimizer, Pooling, RowGradMap, Strided,
};
use rand::RngExt;

/// Runs `$body` (which returns the outputs to compare; `?` allowed) on the backend and on
/// the CPU.
macro_rules! both {
    ($dev:expr, $cpu:expr, |$d:ident| $body:block) => {{
        let got: Vec<f32> = {
            let $d = $dev;
            (|| -> Result<Vec<f32>, DeviceError> { Ok($body) })()?
        };
        let want: Vec<f32> = {
            let $d = $cpu;
            (|| -> Result<Vec<f32>, DeviceError> { Ok($body) })()?
        };
        (got, want)
    }};
}
pub(super) use both;

/// Bags × dim: 1, a workgroup's 64 and its neighbours, a warp's 32 crossed, wide rows.
const SHAPES: [(usize, usize); 6] = [(1, 1), (63, 3), (64, 16), (65, 64), (1000, 100), (130, 128)];

/// Pooled bags (sum or mean) into a strided output, over [`SHAPES`] with empty bags and
/// repeated rows.
pub fn bag_forward<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    pooling: Pooling,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for (bags, dim) in SHAPES {
        let rows = r.random_range(1..400u32);
        let table = uniform(&mut r, rows as usize * dim);
        let b = random_bags(&mut r, bags, rows, 8);
        let (got, want) = both!(dev, cpu, |d| {
            let out = d.alloc_elems(bags * 2 * dim)?;
            d.bag_forward(&BagForward {
                table: &d.buffer_from_f32(&table)?,
                indices: &d.buffer_from_u32(&b.indices)?,
                offsets: &d.buffer_from_u32(&b.offsets)?,
                shape: BagShape {
                    rows,
                    dim: dim as u32,
                    bags: bags as u32,
                    pooling,
                },
                out: Strided {
                    buffer: &out,
                    stride: 2 * dim as u32,
                    offset: dim as u32,
                },
            })?;
            d.read_f32(&out, 0..bags * 2 * dim)?
        });
        ck.compare(
            "bag_forward",
            &format!("bag_forward {pooling:?} {bags}x{dim}"),
            &got,
            &want,
            SUM,
        );
    }
    Ok(())
}

/// The fused embedding backward with SGD or row-wise Adagrad through the batch's unique-row
/// map: the updated table and optimizer state.
pub fn bag_backward<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    pooling: Pooling,
    adagrad: bool,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for (bags, dim) in SHAPES {
        let rows = r.random_range(1..3000u32);
        let table = uniform(&mut r, rows as usize * dim);
        let state: Vec<f32> = (0..rows).map(|_| r.random_range(0.0f32..1.0)).collect();
        let b = random_bags(&mut r, bags, rows, 8);
        let map = RowMap::from_bags(&b);
        let grad = uniform(&mut r, bags * dim);
        let (got, want) = both!(dev, cpu, |d| {
            let t = d.buffer_from_f32(&table)?;
            let s = d.buffer_from_f32(&state)?;
            let (ur, rs, bi) = (
                d.buffer_from_u32(&map.unique_rows)?,
                d.buffer_from_u32(&map.row_starts)?,
                d.buffer_from_u32(&map.bag_ids)?,
            );
            let (o, g) = (d.buffer_from_u32(&b.offsets)?, d.buffer_from_f32(&grad)?);
            let args = BagBackward {
                table: &t,
                map: RowGradMap {
                    unique_rows: &ur,
                    row_starts: &rs,
                    bag_ids: &bi,
                    unique: map.unique() as u32,
                },
                offsets: &o,
                shape: BagShape {
                    rows,
                    dim: dim as u32,
                    bags: bags as u32,
                    pooling,
                },
                grad: Strided::packed(&g, dim as u32),
                lr: 0.25,
            };
            if adagrad {
                d.bag_backward_adagrad(&args, &s, 1e-6)?;
            } else {
                d.bag_backward_sgd(&args)?;
            }
            let mut out = d.read_f32(&t, 0..table.len())?;
            out.extend(d.read_f32(&s, 0..rows as usize)?);
            out
        });
        let tol = if adagrad { TRANSCENDENTAL } else { SUM };
        ck.compare(
            if adagrad {
                "bag_backward_adagrad"
            } else {
                "bag_backward_sgd"
            },
            &format!("bag_backward {pooling:?} adagrad={adagrad} {bags}x{dim}"),
            &got,
            &want,
            tol,
        );
    }
    Ok(())
}

/// `C = alpha·op(A)·op(B) + beta·C` with `ta`/`tb` transposes, NaN in C ignored when beta is
/// 0; the absolute tolerance grows with √k (a dot of k terms).
pub fn gemm<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    ta: bool,
    tb: bool,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for (m, n, k) in [
        (1, 1, 1),
        (63, 64, 65),
        (1000, 17, 33),
        (16, 128, 100),
        (65, 3, 1),
    ] {
        for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, -1.5)] {
            let (a, b) = (uniform(&mut r, m * k), uniform(&mut r, k * n));
            let mut c0 = uniform(&mut r, m * n);
            if beta == 0.0 {
                c0[0] = f32::NAN; // must be ignored
            }
            let (got, want) = both!(dev, cpu, |d| {
                let c = d.buffer_from_f32(&c0)?;
                d.gemm(&Gemm {
                    a: &d.buffer_from_f32(&a)?,
                    b: &d.buffer_from_f32(&b)?,
                    c: &c,
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    trans_a: ta,
                    trans_b: tb,
                    alpha,
                    beta,
                })?;
                d.read_f32(&c, 0..m * n)?
            });
            // A dot of k terms: allow k ulps-worth relative to the terms' size (≤ 1 here).
            let tol = (SUM.0, 1e-6 * (k as f64).sqrt());
            ck.compare(
                "gemm",
                &format!("gemm {m}x{n}x{k} ta={ta} tb={tb} a={alpha} b={beta}"),
                &got,
                &want,
                tol,
            );
        }
    }
    Ok(())
}

/// Sigmoid + binary cross-entropy and its gradient, logits up to ±70.
pub fn bce_loss<D: Device>(dev: &D, cpu: &CpuDevice, ck: &mut Checker) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for batch in [1usize, 63, 64, 65, 1000] {
        let mut z: Vec<f32> = (0..batch).map(|_| r.random_range(-12.0f32..12.0)).collect();
        z[0] = -70.0;
        let y: Vec<f32> = (0..batch).map(|_| r.random_range(0..2u8) as f32).collect();
        let (got, want) = both!(dev, cpu, |d| {
            let (lb, gb) = (d.alloc_elems(batch)?, d.alloc_elems(batch)?);
            d.bce_loss(&BceLoss {
                logits: &d.buffer_from_f32(&z)?,
                labels: &d.buffer_from_f32(&y)?,
                loss: &lb,
                dlogits: &gb,
                batch: batch as u32,
                scale: 1.0 / batch as f32,
            })?;
            let mut out = d.read_f32(&lb, 0..batch)?;
            out.extend(d.read_f32(&gb, 0..batch)?);
            out
        });
        ck.compare(
            "bce_loss",
            &format!("bce_loss {batch}"),
            &got,
            &want,
            TRANSCENDENTAL,
        );
    }
    Ok(())
}

/// The dense optimizer step (SGD or Adagrad) over lengths up to 100,000.
pub fn dense_update<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    adagrad: bool,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for len in [1usize, 63, 64, 65, 1000, 100_000] {
        let (w, g) = (uniform(&mut r, len), uniform(&mut r, len));
        let s: Vec<f32> = (0..len).map(|_| r.random_range(0.0f32..2.0)).collect();
        let optimizer = if adagrad {
            Optimizer::Adagrad
        } else {
            Optimizer::Sgd
        };
        let (got, want) = both!(dev, cpu, |d| {
            let (wb, sb) = (d.buffer_from_f32(&w)?, d.buffer_from_f32(&s)?);
            let gb = d.buffer_from_f32(&g)?;
            let state = adagrad.then_some(&sb);
            d.dense_update(&DenseUpdate {
                param: &wb,
                grad: &gb,
                state,
                len: len as u32,
                lr: 0.05,
                optimizer,
                eps: 1e-8,
            })?;
            let mut out = d.read_f32(&wb, 0..len)?;
            out.extend(d.read_f32(&sb, 0..len)?);
            out
        });
        ck.compare(
            "dense_update",
            &format!("dense_update adagrad={adagrad} {len}"),
            &got,
            &want,
            TRANSCENDENTAL,
        );
    }
    Ok(())
}

/// Uploads, downloads and copies move bits exactly.
pub fn transfers<D: Device>(dev: &D, ck: &mut Checker) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    let data = uniform(&mut r, 50_001);
    let b = dev.alloc_elems(60_000)?;
    dev.upload_elems(&b, 3, &data)?;
    ck.compare(
        "transfers",
        "upload+download",
        &dev.read_f32(&b, 3..3 + data.len())?,
        &data,
        EXACT,
    );
    ck.compare(
        "transfers",
        "partial download",
        &dev.read_f32(&b, 1000..1007)?,
        &data[997..1004],
        EXACT,
    );
    let c = dev.alloc_elems(60_000)?;
    dev.copy_buffer(&b, 12, &c, 0, 4 * 50_000)?;
    ck.compare(
        "transfers",
        "copy_buffer",
        &dev.read_f32(&c, 0..50_000)?,
        &data[..50_000],
        EXACT,
    );
    Ok(())
}
