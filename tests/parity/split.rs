//! The embedding kernels with tiny limits: tables split into many buffers and bound in many
//! windows, which real tables need on real adapters (lavapipe binds at most 128 MiB).
use super::*;
use rand::RngExt;
use rowflow::device::{Activation, BiasActForward, BiasActShape};

fn small() -> Option<rowflow::device::wgpu::WgpuDevice> {
    common::wgpu_device_with(WgpuOptions {
        max_binding_bytes: Some(8192),
        max_buffer_bytes: Some(20_000),
        ..WgpuOptions::default()
    })
}

fn tables_in_windows(pooling: Pooling, adagrad: bool) {
    let Some(dev) = small() else { return };
    let cpu = CpuDevice::new();
    let mut r = rng(seed("windows"));
    // 700 rows of D=20 (80 B) span 3 buffers of 250 rows and ~8 windows; D=3 rows (12 B)
    // do not divide the 256-byte binding alignment.
    for (rows, dim, bags) in [(700u32, 20usize, 20usize), (3000, 3, 40), (64, 32, 1)] {
        let table = uniform(&mut r, rows as usize * dim);
        let state: Vec<f32> = (0..rows).map(|_| r.random_range(0.0f32..1.0)).collect();
        let b = random_bags(&mut r, bags, rows, 12);
        let map = RowMap::from_bags(&b);
        let grad = uniform(&mut r, bags * dim);
        let (got, want) = both!(&dev, &cpu, |d| {
            let t = d.alloc_rows(rows as u64, 4 * dim as u64).unwrap();
            d.upload_elems(&t, 0, &table).unwrap();
            let s = d.alloc_rows(rows as u64, 4).unwrap();
            d.upload_elems(&s, 0, &state).unwrap();
            let (idx, offs) = (
                d.buffer_from_u32(&b.indices).unwrap(),
                d.buffer_from_u32(&b.offsets).unwrap(),
            );
            let out = d.alloc_elems(bags * dim).unwrap();
            d.bag_forward(&BagForward {
                table: &t,
                indices: &idx,
                offsets: &offs,
                shape: BagShape {
                    rows,
                    dim: dim as u32,
                    bags: bags as u32,
                    pooling,
                },
                out: Strided::packed(&out, dim as u32),
            })
            .unwrap();
            let (ur, rs, bi) = (
                d.buffer_from_u32(&map.unique_rows).unwrap(),
                d.buffer_from_u32(&map.row_starts).unwrap(),
                d.buffer_from_u32(&map.bag_ids).unwrap(),
            );
            let g = d.buffer_from_f32(&grad).unwrap();
            let args = BagBackward {
                table: &t,
                map: RowGradMap {
                    unique_rows: &ur,
                    row_starts: &rs,
                    bag_ids: &bi,
                    unique: map.unique() as u32,
                },
                offsets: &offs,
                shape: BagShape {
                    rows,
                    dim: dim as u32,
                    bags: bags as u32,
                    pooling,
                },
                grad: Strided::packed(&g, dim as u32),
                lr: 0.5,
            };
            if adagrad {
                d.bag_backward_adagrad(&args, &s, 1e-6).unwrap();
            } else {
                d.bag_backward_sgd(&args).unwrap();
            }
            let mut v = d.read_f32(&out, 0..bags * dim).unwrap();
            v.extend(d.read_f32(&t, 0..table.len()).unwrap());
            v.extend(d.read_f32(&s, 0..rows as usize).unwrap());
            v
        });
        assert_parity(
            &format!("windows {rows}x{dim} {pooling:?} adagrad={adagrad}"),
            &got,
            &want,
            TRANSCENDENTAL,
        );
    }
}

#[test]
fn sum_pooled_tables_split_over_buffers_and_windows_match_cpu() {
    tables_in_windows(Pooling::Sum, true);
}

#[test]
fn mean_pooled_tables_split_over_buffers_and_windows_match_cpu() {
    tables_in_windows(Pooling::Mean, false);
}

#[test]
fn transfers_across_buffer_parts_are_exact() {
    if let Some(dev) = small() {
        check(&dev, "transfers", |d, _c, k| {
            rowflow::check::transfers(d, k)
        });
    }
}

#[test]
fn an_activation_beyond_one_binding_is_a_clear_error() {
    let Some(dev) = small() else { return };
    let x = dev.alloc_elems(10_000).unwrap(); // 40 kB > the 8 kB binding
    let bias = dev.alloc_elems(100).unwrap();
    let e = dev
        .bias_act_forward(&BiasActForward {
            x: &x,
            bias: &bias,
            shape: BiasActShape {
                rows: 100,
                cols: 100,
                act: Activation::Relu,
            },
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_storage_buffer_binding_size") && e.contains("`x`"),
        "{e}"
    );
}

#[test]
fn dispatches_beyond_65535_workgroups_are_split() {
    let Some(dev) = common::wgpu_device() else {
        return;
    };
    let cpu = CpuDevice::new();
    let (rows, cols) = (70_000usize, 64usize); // 70,000 workgroups of 64
    let mut r = rng(seed("big_dispatch"));
    let (x, bias) = (uniform(&mut r, rows * cols), uniform(&mut r, cols));
    let (got, want) = both!(&dev, &cpu, |d| {
        let xb = d.buffer_from_f32(&x).unwrap();
        let bb = d.buffer_from_f32(&bias).unwrap();
        d.bias_act_forward(&BiasActForward {
            x: &xb,
            bias: &bb,
            shape: BiasActShape {
                rows: rows as u32,
                cols: cols as u32,
                act: Activation::Relu,
            },
        })
        .unwrap();
        d.read_f32(&xb, 0..rows * cols).unwrap()
    });
    assert_parity("bias_act_forward 70,000 workgroups", &got, &want, SUM);
}

#[test]
fn caches_split_over_buffers_and_windows_quantize_like_cpu() {
    use rowflow::device::{DequantizeRows, QuantizeRows, RowMove, StateRows};
    use rowflow::precision::{Precision, Rounding};
    let Some(dev) = small() else { return };
    let cpu = CpuDevice::new();
    let mut r = rng(seed("cache_windows"));
    let (slots, dim, n) = (700u32, 20usize, 50usize);
    let cache = uniform(&mut r, slots as usize * dim);
    let state: Vec<f32> = (0..slots).map(|i| i as f32).collect();
    let picked: Vec<u32> = (0..n as u32).map(|i| (i * 13 + 5) % slots).collect();
    let ids: Vec<u32> = (0..n as u32).collect();
    for precision in [Precision::Int8, Precision::Int4, Precision::Fp16] {
        let words = precision.row_words(dim);
        let (got, want) = both!(&dev, &cpu, |d| {
            let cb = d.alloc_rows(slots as u64, 4 * dim as u64).unwrap();
            d.upload_elems(&cb, 0, &cache).unwrap();
            let csb = d.alloc_rows(slots as u64, 4).unwrap();
            d.upload_elems(&csb, 0, &state).unwrap();
            let (sb, ib) = (
                d.buffer_from_u32(&picked).unwrap(),
                d.buffer_from_u32(&ids).unwrap(),
            );
            let (packed, stb) = (d.alloc_elems(n * words).unwrap(), d.alloc_elems(n).unwrap());
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
                rounding: Rounding::Stochastic,
                seed: 1,
                step: 2,
            })
            .unwrap();
            let back = d.alloc_rows(slots as u64, 4 * dim as u64).unwrap();
            let state2 = d.alloc_rows(slots as u64, 4).unwrap();
            d.dequantize_rows(&DequantizeRows {
                moved: RowMove {
                    packed: &packed,
                    slots: &sb,
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
            })
            .unwrap();
            let mut v = d.read_f32(&back, 0..slots as usize * dim).unwrap();
            v.extend(d.read_f32(&state2, 0..slots as usize).unwrap());
            v
        });
        assert_parity(
            &format!("cache windows {precision:?}"),
            &got,
            &want,
            (0.0, 2.0 / 15.0 + 1e-6),
        );
    }
}
