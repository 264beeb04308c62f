//! Bias + activation and the DLRM interaction against float64, forward and backward.

use super::*;
use rowflow::device::kernels::interaction_width;
use rowflow::device::{
    Activation, BiasActBackward, BiasActForward, BiasActShape, InteractionBackward,
    InteractionForward, InteractionShape,
};

pub fn bias_act_matches_naive<D: Device>(dev: &D) {
    mish_matches_naive(dev);
    let mut r = rng(seed("bias_act"));
    for (rows, cols) in [(1, 1), (63, 3), (64, 64), (65, 100), (1000, 17)] {
        for act in [Activation::Relu, Activation::Identity] {
            let x = uniform(&mut r, rows * cols);
            let bias = uniform(&mut r, cols);
            let xb = dev.buffer_from_f32(&x).unwrap();
            let bb = dev.buffer_from_f32(&bias).unwrap();
            let shape = BiasActShape {
                rows: rows as u32,
                cols: cols as u32,
                act,
            };
            dev.bias_act_forward(&BiasActForward {
                x: &xb,
                bias: &bb,
                shape,
            })
            .unwrap();
            let y = dev.read_f32(&xb, 0..rows * cols).unwrap();
            let f = |z: f64| {
                if act == Activation::Relu {
                    z.max(0.0)
                } else {
                    z
                }
            };
            let want: Vec<f64> = (0..rows * cols)
                .map(|i| f(x[i] as f64 + bias[i % cols] as f64))
                .collect();
            let scale: Vec<f64> = (0..rows * cols)
                .map(|i| x[i].abs() as f64 + bias[i % cols].abs() as f64)
                .collect();
            assert_close(
                &format!("bias_act_forward {act:?} {rows}x{cols}"),
                &y,
                &want,
                &scale,
                1e-7,
                0.0,
            );

            let dy = uniform(&mut r, rows * cols);
            let (dyb, db) = (
                dev.buffer_from_f32(&dy).unwrap(),
                dev.buffer_from_f32(&vec![9.0; cols]).unwrap(),
            );
            dev.bias_act_backward(&BiasActBackward {
                y: &xb,
                dy: &dyb,
                dbias: &db,
                shape,
            })
            .unwrap();
            let dz = dev.read_f32(&dyb, 0..rows * cols).unwrap();
            let dbias = dev.read_f32(&db, 0..cols).unwrap();
            let want_dz: Vec<f64> = (0..rows * cols)
                .map(|i| {
                    if act == Activation::Relu && y[i] <= 0.0 {
                        0.0
                    } else {
                        dy[i] as f64
                    }
                })
                .collect();
            assert_close(
                "bias_act_backward dz",
                &dz,
                &want_dz,
                &vec![0.0; rows * cols],
                0.0,
                0.0,
            );
            let want_db: Vec<f64> = (0..cols)
                .map(|c| (0..rows).map(|r| want_dz[r * cols + c]).sum())
                .collect();
            let scale_db: Vec<f64> = (0..cols)
                .map(|c| (0..rows).map(|r| want_dz[r * cols + c].abs()).sum())
                .collect();
            assert_close(
                &format!("bias_act_backward dbias {rows}x{cols}"),
                &dbias,
                &want_db,
                &scale_db,
                REL,
                0.0,
            );
        }
    }
}

pub fn interaction_matches_naive<D: Device>(dev: &D) {
    let mut r = rng(seed("interaction"));
    for (batch, tables, dim) in [
        (1, 1, 1),
        (63, 3, 3),
        (64, 8, 16),
        (65, 2, 100),
        (17, 26, 16),
    ] {
        let width = interaction_width(tables as u32, dim as u32) as usize;
        let dense = uniform(&mut r, batch * dim);
        let emb = uniform(&mut r, batch * tables * dim);
        let (db, eb, ob) = (
            dev.buffer_from_f32(&dense).unwrap(),
            dev.buffer_from_f32(&emb).unwrap(),
            dev.alloc_elems(batch * width).unwrap(),
        );
        let shape = InteractionShape {
            batch: batch as u32,
            tables: tables as u32,
            dim: dim as u32,
        };
        dev.interaction_forward(&InteractionForward {
            dense: &db,
            emb: &eb,
            out: &ob,
            shape,
        })
        .unwrap();
        let got = dev.read_f32(&ob, 0..batch * width).unwrap();
        let v = |b: usize, i: usize, d: usize| if i == 0 { dense[b * dim + d] } else { emb[(b * tables + i - 1) * dim + d] } as f64;
        let (mut want, mut scale) = (vec![], vec![]);
        for b in 0..batch {
            for d in 0..dim {
                want.push(v(b, 0, d));
                scale.push(0.0);
            }
            for i in 1..=tables {
                for j in 0..i {
                    want.push((0..dim).map(|d| v(b, i, d) * v(b, j, d)).sum());
                    scale.push((0..dim).map(|d| (v(b, i, d) * v(b, j, d)).abs()).sum());
                }
            }
        }
        assert_close(
            &format!("interaction_forward b={batch} t={tables} d={dim}"),
            &got,
            &want,
            &scale,
            REL,
            0.0,
        );

        let dout = uniform(&mut r, batch * width);
        let (gb, ddb, deb) = (
            dev.buffer_from_f32(&dout).unwrap(),
            dev.alloc_elems(batch * dim).unwrap(),
            dev.alloc_elems(batch * tables * dim).unwrap(),
        );
        dev.interaction_backward(&InteractionBackward {
            dense: &db,
            emb: &eb,
            dout: &gb,
            ddense: &ddb,
            demb: &deb,
            shape,
        })
        .unwrap();
        let mut want_g = vec![0.0f64; batch * (tables + 1) * dim];
        let mut scale_g = vec![0.0f64; batch * (tables + 1) * dim];
        for b in 0..batch {
            let g = &dout[b * width..][..width];
            let base = b * (tables + 1) * dim;
            for d in 0..dim {
                want_g[base + d] = g[d] as f64;
                scale_g[base + d] = (g[d] as f64).abs();
            }
            let mut p = 0;
            for i in 1..=tables {
                for j in 0..i {
                    for d in 0..dim {
                        let s = g[dim + p] as f64;
                        want_g[base + i * dim + d] += s * v(b, j, d);
                        want_g[base + j * dim + d] += s * v(b, i, d);
                        scale_g[base + i * dim + d] += (s * v(b, j, d)).abs();
                        scale_g[base + j * dim + d] += (s * v(b, i, d)).abs();
                    }
                    p += 1;
                }
            }
        }
        let dd = dev.read_f32(&ddb, 0..batch * dim).unwrap();
        let de = dev.read_f32(&deb, 0..batch * tables * dim).unwrap();
        let mut got_g = Vec::new();
        for b in 0..batch {
            got_g.extend_from_slice(&dd[b * dim..][..dim]);
            got_g.extend_from_slice(&de[b * tables * dim..][..tables * dim]);
        }
        assert_close(
            &format!("interaction_backward b={batch} t={tables} d={dim}"),
            &got_g,
            &want_g,
            &scale_g,
            REL,
            0.0,
        );
    }
}

/// Mish forward and backward (which takes the pre-activation) against float64, over inputs
/// from −20 to 20 (where softplus's two branches and tanh's saturation are).
fn mish_matches_naive<D: Device>(dev: &D) {
    let mut r = rng(seed("bias_act_mish"));
    let (rows, cols) = (65, 100);
    let x: Vec<f32> = uniform(&mut r, rows * cols)
        .iter()
        .map(|v| v * 20.0)
        .collect();
    let bias = uniform(&mut r, cols);
    let shape = BiasActShape {
        rows: rows as u32,
        cols: cols as u32,
        act: Activation::Mish,
    };
    let z: Vec<f32> = (0..rows * cols).map(|i| x[i] + bias[i % cols]).collect();
    let softplus = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
    let mish = |z: f64| z * softplus(z).tanh();
    let grad = |z: f64| {
        let t = softplus(z).tanh();
        t + z * (1.0 - t * t) / (1.0 + (-z).exp())
    };
    let xb = dev.buffer_from_f32(&x).unwrap();
    let bb = dev.buffer_from_f32(&bias).unwrap();
    dev.bias_act_forward(&BiasActForward {
        x: &xb,
        bias: &bb,
        shape,
    })
    .unwrap();
    let y = dev.read_f32(&xb, 0..rows * cols).unwrap();
    let want: Vec<f64> = z.iter().map(|&z| mish(z as f64)).collect();
    let scale: Vec<f64> = z.iter().map(|&z| z.abs() as f64).collect();
    assert_close("bias_act_forward Mish", &y, &want, &scale, 1e-6, 1e-7);
    let dy = uniform(&mut r, rows * cols);
    let (zb, dyb, db) = (
        dev.buffer_from_f32(&z).unwrap(),
        dev.buffer_from_f32(&dy).unwrap(),
        dev.alloc_elems(cols).unwrap(),
    );
    dev.bias_act_backward(&BiasActBackward {
        y: &zb,
        dy: &dyb,
        dbias: &db,
        shape,
    })
    .unwrap();
    let dz = dev.read_f32(&dyb, 0..rows * cols).unwrap();
    let want: Vec<f64> = (0..rows * cols)
        .map(|i| dy[i] as f64 * grad(z[i] as f64))
        .collect();
    // The derivative's terms reach |z| (1 − t²) σ(z) ≤ 1.1: relative to that and to dy.
    let scale: Vec<f64> = dy.iter().map(|d| 1.2 * d.abs() as f64).collect();
    assert_close("bias_act_backward Mish dz", &dz, &want, &scale, 1e-5, 1e-7);
    let dbias = dev.read_f32(&db, 0..cols).unwrap();
    let want_db: Vec<f64> = (0..cols)
        .map(|c| (0..rows).map(|r| want[r * cols + c]).sum())
        .collect();
    let scale_db: Vec<f64> = (0..cols)
        .map(|c| (0..rows).map(|r| want[r * cols + c].abs() + 1e-5).sum())
        .collect();
    assert_close(
        "bias_act_backward Mish dbias",
        &dbias,
        &want_db,
        &scale_db,
        1e-5,
        0.0,
    );
}
