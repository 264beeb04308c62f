//! Every kernel of the `Device` trait against a naive float64 computation, on fresh random
//! inputs at sizes that cross workgroup and SIMD-block boundaries.
//!
//! Each test body is generic over the backend; `kernel_tests!` stamps out one `#[test]` per
//! backend. Tolerances: gathers and copies are exact; f32 sums are within `1e-5` of the sum of
//! the magnitudes of their terms (f32 rounding grows with the number of terms, not with the
//! result); transcendental functions (exp, ln, sqrt) add `1e-6` absolute.

mod common;

use common::{assert_close, rng, seed, uniform};
use rand::RngExt;
use rowflow::data::Bags;
use rowflow::data::RowMap;
use rowflow::device::cpu::CpuDevice;
use rowflow::device::{
    BagBackward, BagForward, BagShape, BceLoss, DenseUpdate, Device, DeviceError, DeviceExt, Gemm,
    Optimizer, Pooling, RowGradMap, Strided,
};

const REL: f64 = 1e-5;

#[path = "kernels/dense.rs"]
mod dense;
#[path = "kernels/embedding.rs"]
mod embedding;
#[path = "kernels/quantize.rs"]
mod quantize;
use dense::{bias_act_matches_naive, interaction_matches_naive};
use embedding::{bag_backward_matches_naive, bag_forward_matches_naive};
use quantize::{dequantize_rows_match_reference, quantize_rows_match_reference};

fn gemm_matches_naive<D: Device>(dev: &D) {
    let mut r = rng(seed("gemm"));
    for (m, n, k) in [
        (1, 1, 1),
        (17, 3, 64),
        (64, 65, 63),
        (130, 33, 200),
        (2, 300, 5),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 1.0), (-2.0, 0.25)] {
                let a = uniform(&mut r, m * k);
                let b = uniform(&mut r, k * n);
                let mut c0 = uniform(&mut r, m * n);
                if beta == 0.0 {
                    c0.iter_mut().step_by(3).for_each(|x| *x = f32::NAN); // ignored when beta = 0
                }
                let c = dev.buffer_from_f32(&c0).unwrap();
                dev.gemm(&Gemm {
                    a: &dev.buffer_from_f32(&a).unwrap(),
                    b: &dev.buffer_from_f32(&b).unwrap(),
                    c: &c,
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    trans_a: ta,
                    trans_b: tb,
                    alpha,
                    beta,
                })
                .unwrap();
                let got = dev.read_f32(&c, 0..m * n).unwrap();
                let at = |i: usize, l: usize| if ta { a[l * m + i] } else { a[i * k + l] } as f64;
                let bt = |l: usize, j: usize| if tb { b[j * k + l] } else { b[l * n + j] } as f64;
                let (mut want, mut scale) = (vec![], vec![]);
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
                        let mag: f64 = (0..k).map(|l| (at(i, l) * bt(l, j)).abs()).sum();
                        let prev = if beta == 0.0 {
                            0.0
                        } else {
                            beta as f64 * c0[i * n + j] as f64
                        };
                        want.push(alpha as f64 * dot + prev);
                        scale.push(alpha.abs() as f64 * mag + prev.abs());
                    }
                }
                assert_close(
                    &format!("gemm m={m} n={n} k={k} ta={ta} tb={tb} a={alpha} b={beta}"),
                    &got,
                    &want,
                    &scale,
                    REL,
                    0.0,
                );
            }
        }
    }
}

fn bce_matches_naive<D: Device>(dev: &D) {
    let mut r = rng(seed("bce_loss"));
    for batch in [1usize, 63, 64, 65, 1000] {
        let mut z: Vec<f32> = (0..batch).map(|_| r.random_range(-8.0f32..8.0)).collect();
        z[0] = if batch > 1 { 60.0 } else { -60.0 }; // saturated logits stay finite
        let y: Vec<f32> = (0..batch).map(|_| r.random_range(0..2u8) as f32).collect();
        let (zb, yb, lb, gb) = (
            dev.buffer_from_f32(&z).unwrap(),
            dev.buffer_from_f32(&y).unwrap(),
            dev.alloc_elems(batch).unwrap(),
            dev.alloc_elems(batch).unwrap(),
        );
        let scale = 1.0 / batch as f32;
        dev.bce_loss(&BceLoss {
            logits: &zb,
            labels: &yb,
            loss: &lb,
            dlogits: &gb,
            batch: batch as u32,
            scale,
        })
        .unwrap();
        let loss = dev.read_f32(&lb, 0..batch).unwrap();
        let grad = dev.read_f32(&gb, 0..batch).unwrap();
        let p = |z: f64| 1.0 / (1.0 + (-z).exp());
        // log(1 + e^z) - y z, written stably in f64.
        let want: Vec<f64> = z
            .iter()
            .zip(&y)
            .map(|(&z, &y)| {
                let z = z as f64;
                z.max(0.0) + (-z.abs()).exp().ln_1p() - y as f64 * z
            })
            .collect();
        let want_g: Vec<f64> = z
            .iter()
            .zip(&y)
            .map(|(&z, &y)| scale as f64 * (p(z as f64) - y as f64))
            .collect();
        assert!(loss.iter().all(|l| l.is_finite()));
        let mag: Vec<f64> = want.iter().map(|w| w.abs()).collect();
        assert_close("bce_loss", &loss, &want, &mag, 1e-6, 1e-6);
        assert_close(
            "bce_loss grad",
            &grad,
            &want_g,
            &vec![0.0; batch],
            0.0,
            1e-7,
        );
    }
}

fn dense_update_matches_naive<D: Device>(dev: &D) {
    let mut r = rng(seed("dense_update"));
    for len in [1usize, 63, 64, 65, 1000, 70_000] {
        for adagrad in [false, true] {
            let w = uniform(&mut r, len);
            let g = uniform(&mut r, len);
            let s: Vec<f32> = (0..len).map(|_| r.random_range(0.0f32..1.0)).collect();
            let (wb, gb, sb) = (
                dev.buffer_from_f32(&w).unwrap(),
                dev.buffer_from_f32(&g).unwrap(),
                dev.buffer_from_f32(&s).unwrap(),
            );
            let (lr, eps) = (0.1f32, 1e-8f32);
            let optimizer = if adagrad {
                Optimizer::Adagrad
            } else {
                Optimizer::Sgd
            };
            dev.dense_update(&DenseUpdate {
                param: &wb,
                grad: &gb,
                state: Some(&sb),
                len: len as u32,
                lr,
                optimizer,
                eps,
            })
            .unwrap();
            let got = dev.read_f32(&wb, 0..len).unwrap();
            let got_s = dev.read_f32(&sb, 0..len).unwrap();
            let (mut want, mut want_s) = (vec![], vec![]);
            for i in 0..len {
                let (w, g, s) = (w[i] as f64, g[i] as f64, s[i] as f64);
                if adagrad {
                    let s2 = s + g * g;
                    want_s.push(s2);
                    want.push(w - lr as f64 * g / (s2.sqrt() + eps as f64));
                } else {
                    want_s.push(s);
                    want.push(w - lr as f64 * g);
                }
            }
            let mag: Vec<f64> = want.iter().map(|x| x.abs() + 1.0).collect();
            assert_close(
                &format!("dense_update adagrad={adagrad} len={len}"),
                &got,
                &want,
                &mag,
                1e-6,
                0.0,
            );
            assert_close(
                "dense_update state",
                &got_s,
                &want_s,
                &want_s.clone(),
                1e-6,
                0.0,
            );
        }
    }
}

fn copy_buffer_is_exact<D: Device>(dev: &D) {
    let mut r = rng(seed("copy_buffer"));
    let src = uniform(&mut r, 70_001);
    let (a, b) = (
        dev.buffer_from_f32(&src).unwrap(),
        dev.alloc_elems(80_000).unwrap(),
    );
    dev.copy_buffer(&a, 4, &b, 40, 4 * 70_000).unwrap();
    let got = dev.read_f32(&b, 10..10 + 70_000).unwrap();
    assert_eq!(got, src[1..]);
    assert!(dev.read_f32(&b, 0..10).unwrap().iter().all(|&x| x == 0.0));
}

/// `read_async` copies what the launches before it left, whatever comes after; the host may
/// ask whether it has landed without waiting; misuse is an error.
fn read_async_reads_what_earlier_launches_left<D: Device>(dev: &D) {
    let n = 70_001;
    let first = uniform(&mut rng(seed("read_async")), n);
    let src = dev.buffer_from_f32(&first).unwrap();
    let second: Vec<f32> = first.iter().map(|x| x + 1.0).collect();
    let other = dev.buffer_from_f32(&second).unwrap();
    let mut rb = dev.alloc_readback(4 * n as u64).unwrap();
    dev.read_async(&src, 0, 4 * n as u64, &mut rb).unwrap();
    // Later work overwrites the source, by a copy on the device and by an upload.
    dev.copy_buffer(&other, 0, &src, 0, 4 * n as u64).unwrap();
    dev.upload_elems(&src, 0, &[7.0f32]).unwrap();
    let mut got = vec![0f32; n];
    dev.finish_read(&mut rb, bytemuck::cast_slice_mut(&mut got))
        .unwrap();
    assert_eq!(got, first, "the read saw later work");
    // A part of the buffer, polled until it lands.
    dev.read_async(&src, 4, 4 * 10, &mut rb).unwrap();
    let t0 = std::time::Instant::now();
    while !dev.readback_ready(&rb).unwrap() {
        assert!(t0.elapsed().as_secs() < 30, "the read never landed");
        std::thread::yield_now();
    }
    let mut part = vec![0f32; 10];
    dev.finish_read(&mut rb, bytemuck::cast_slice_mut(&mut part))
        .unwrap();
    assert_eq!(part, second[1..11]);
    let invalid = |r: Result<(), DeviceError>, what: &str| {
        assert!(
            matches!(r, Err(DeviceError::InvalidArgument { .. })),
            "{what}: {r:?}"
        )
    };
    invalid(
        dev.finish_read(&mut rb, &mut [0u8; 4]),
        "finishing a read never started",
    );
    invalid(
        dev.read_async(&src, 0, 4 * n as u64 + 4, &mut rb),
        "a read longer than its readback",
    );
    dev.read_async(&src, 0, 8, &mut rb).unwrap();
    invalid(
        dev.finish_read(&mut rb, &mut [0u8; 4]),
        "a destination shorter than the read",
    );
    assert!(matches!(
        dev.read_async(&src, 4 * n as u64 - 4, 8, &mut rb),
        Err(DeviceError::OutOfBounds { .. })
    ));
}

fn bad_launches_are_errors_not_panics<D: Device>(dev: &D) {
    let table = dev.buffer_from_f32(&[1.0; 8]).unwrap();
    let idx = dev.buffer_from_u32(&[0, 5]).unwrap(); // row 5 of a 4-row table
    let offs = dev.buffer_from_u32(&[0, 2]).unwrap();
    let out = dev.alloc_elems(2).unwrap();
    let fwd = |indices: &D::Buffer, out: &D::Buffer| {
        dev.bag_forward(&BagForward {
            table: &table,
            indices,
            offsets: &offs,
            shape: BagShape {
                rows: 4,
                dim: 2,
                bags: 1,
                pooling: Pooling::Sum,
            },
            out: Strided::packed(out, 2),
        })
    };
    // The CPU checks indices synchronously; a GPU skips an index past the table (reading
    // nothing outside it). Either way: no panic, no garbage.
    match fwd(&idx, &out) {
        Err(DeviceError::IndexOutOfRange {
            index: 5, rows: 4, ..
        }) => {}
        Ok(()) => assert_eq!(
            dev.read_f32(&out, 0..2).unwrap(),
            vec![1.0, 1.0],
            "row 0 only"
        ),
        other => panic!("unexpected {other:?}"),
    }
    let small = dev.alloc_elems(1).unwrap();
    let ok_idx = dev.buffer_from_u32(&[0, 1]).unwrap();
    assert!(
        matches!(
            fwd(&ok_idx, &small),
            Err(DeviceError::InvalidArgument { .. })
        ),
        "output too small"
    );
    assert!(
        matches!(
            fwd(&ok_idx, &table),
            Err(DeviceError::InvalidArgument { .. })
        ),
        "output aliases the table"
    );
    let g = dev.alloc_elems(4).unwrap();
    let e = dev.dense_update(&DenseUpdate {
        param: &table,
        grad: &g,
        state: None,
        len: 4,
        lr: 0.1,
        optimizer: Optimizer::Adagrad,
        eps: 1e-8,
    });
    assert!(
        matches!(e, Err(DeviceError::InvalidArgument { .. })),
        "Adagrad without state"
    );
    assert!(matches!(
        dev.upload(&g, 12, &[0u8; 8]),
        Err(DeviceError::OutOfBounds { .. })
    ));
    assert!(dev.alloc(3).is_err(), "sizes are multiples of 4");
}

macro_rules! kernel_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            macro_rules! with_dev {
                ($body:expr) => {
                    if let Some(dev) = $make {
                        $body(&dev)
                    }
                };
            }
            #[test]
            fn bag_forward_matches_float64_across_block_boundaries() {
                with_dev!(bag_forward_matches_naive);
            }
            #[test]
            fn bag_backward_sgd_and_adagrad_match_float64_with_duplicates() {
                with_dev!(bag_backward_matches_naive);
            }
            #[test]
            fn gemm_matches_float64_for_every_transpose() {
                with_dev!(gemm_matches_naive);
            }
            #[test]
            fn bias_act_forward_and_backward_match_float64() {
                with_dev!(bias_act_matches_naive);
            }
            #[test]
            fn interaction_forward_and_backward_match_float64() {
                with_dev!(interaction_matches_naive);
            }
            #[test]
            fn bce_loss_matches_float64_and_stays_finite() {
                with_dev!(bce_matches_naive);
            }
            #[test]
            fn dense_update_sgd_and_adagrad_match_float64() {
                with_dev!(dense_update_matches_naive);
            }
            #[test]
            fn copy_buffer_copies_exactly() {
                with_dev!(copy_buffer_is_exact);
            }
            #[test]
            fn quantize_rows_matches_the_reference_packing() {
                with_dev!(quantize_rows_match_reference);
            }
            #[test]
            fn dequantize_rows_matches_the_reference_and_moves_state() {
                with_dev!(dequantize_rows_match_reference);
            }
            #[test]
            fn read_async_reads_what_earlier_launches_left() {
                with_dev!(super::read_async_reads_what_earlier_launches_left);
            }
            #[test]
            fn bad_launches_are_errors_not_panics() {
                with_dev!(super::bad_launches_are_errors_not_panics);
            }
        }
    };
}

kernel_tests!(cpu, Some(CpuDevice::new()));
kernel_tests!(wgpu, common::wgpu_device());
kernel_tests!(cuda, common::cuda_device());
