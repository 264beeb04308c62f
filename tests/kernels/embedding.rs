//! Embedding kernels against float64: pooled lookup and the fused backward.

use super::*;
// Empty bags, and half the lookups on 3 hot rows (duplicates within and across bags).
use rowflow::check::random_bags;

pub fn bag_forward_matches_naive<D: Device>(dev: &D) {
    let mut r = rng(seed("bag_forward"));
    for (bags, dim) in [
        (1, 1),
        (63, 3),
        (64, 16),
        (65, 64),
        (1000, 100),
        (130, 128),
        (7, 65),
    ] {
        for pooling in [Pooling::Sum, Pooling::Mean] {
            let rows = r.random_range(1..300u32);
            let table = uniform(&mut r, rows as usize * dim);
            let b = random_bags(&mut r, bags, rows, 9);
            // Strided output: this table is column 1 of 3.
            let (stride, off) = (3 * dim, dim);
            let out = dev.alloc_elems(bags * stride).unwrap();
            dev.bag_forward(&BagForward {
                table: &dev.buffer_from_f32(&table).unwrap(),
                indices: &dev.buffer_from_u32(&b.indices).unwrap(),
                offsets: &dev.buffer_from_u32(&b.offsets).unwrap(),
                shape: BagShape {
                    rows,
                    dim: dim as u32,
                    bags: bags as u32,
                    pooling,
                },
                out: Strided {
                    buffer: &out,
                    stride: stride as u32,
                    offset: off as u32,
                },
            })
            .unwrap();
            let got = dev.read_f32(&out, 0..bags * stride).unwrap();
            let (mut want, mut scale, mut got_col) = (vec![], vec![], vec![]);
            for bag in 0..bags {
                let idx = b.bag(bag);
                let n = if pooling == Pooling::Mean && !idx.is_empty() {
                    idx.len() as f64
                } else {
                    1.0
                };
                for d in 0..dim {
                    want.push(
                        idx.iter()
                            .map(|&i| table[i as usize * dim + d] as f64)
                            .sum::<f64>()
                            / n,
                    );
                    scale.push(
                        idx.iter()
                            .map(|&i| table[i as usize * dim + d].abs() as f64)
                            .sum::<f64>(),
                    );
                    got_col.push(got[bag * stride + off + d]);
                }
                // Columns of the other tables are untouched.
                assert!(
                    got[bag * stride..bag * stride + off]
                        .iter()
                        .all(|&x| x == 0.0)
                );
            }
            assert_close(
                &format!("bag_forward {pooling:?} bags={bags} dim={dim}"),
                &got_col,
                &want,
                &scale,
                REL,
                0.0,
            );
        }
    }
}

/// Naive float64 reference of the fused backward: per unique row, the summed gradient.
fn naive_row_grads(
    b: &Bags,
    grad: &[f32],
    stride: usize,
    off: usize,
    dim: usize,
    pooling: Pooling,
) -> std::collections::BTreeMap<u32, (Vec<f64>, Vec<f64>)> {
    let mut m = std::collections::BTreeMap::new();
    for bag in 0..b.len() {
        let idx = b.bag(bag);
        let inv = if pooling == Pooling::Mean {
            1.0 / idx.len() as f64
        } else {
            1.0
        };
        for &row in idx {
            let e = m
                .entry(row)
                .or_insert_with(|| (vec![0.0; dim], vec![0.0; dim]));
            for d in 0..dim {
                let g = grad[bag * stride + off + d] as f64 * inv;
                e.0[d] += g;
                e.1[d] += g.abs();
            }
        }
    }
    m
}

pub fn bag_backward_matches_naive<D: Device>(dev: &D) {
    let mut r = rng(seed("bag_backward"));
    for (bags, dim) in [
        (1, 1),
        (63, 3),
        (64, 16),
        (65, 64),
        (1000, 100),
        (300, 128),
        (40, 65),
    ] {
        for pooling in [Pooling::Sum, Pooling::Mean] {
            for adagrad in [false, true] {
                let rows = r.random_range(1..2000u32);
                let table = uniform(&mut r, rows as usize * dim);
                let state: Vec<f32> = (0..rows).map(|_| r.random_range(0.0f32..0.5)).collect();
                let b = random_bags(&mut r, bags, rows, 9);
                let map = RowMap::from_bags(&b);
                let (stride, off) = (2 * dim, dim);
                let grad = uniform(&mut r, bags * stride);
                let (lr, eps) = (0.3f32, 1e-6f32);
                let table_buf = dev.buffer_from_f32(&table).unwrap();
                let state_buf = dev.buffer_from_f32(&state).unwrap();
                let (ur, rs, bi) = (
                    dev.buffer_from_u32(&map.unique_rows).unwrap(),
                    dev.buffer_from_u32(&map.row_starts).unwrap(),
                    dev.buffer_from_u32(&map.bag_ids).unwrap(),
                );
                let (offs, grad_buf) = (
                    dev.buffer_from_u32(&b.offsets).unwrap(),
                    dev.buffer_from_f32(&grad).unwrap(),
                );
                let args = BagBackward {
                    table: &table_buf,
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
                    grad: Strided {
                        buffer: &grad_buf,
                        stride: stride as u32,
                        offset: off as u32,
                    },
                    lr,
                };
                if adagrad {
                    dev.bag_backward_adagrad(&args, &state_buf, eps).unwrap();
                } else {
                    dev.bag_backward_sgd(&args).unwrap();
                }
                let got = dev.read_f32(&table_buf, 0..table.len()).unwrap();
                let got_state = dev.read_f32(&state_buf, 0..rows as usize).unwrap();
                let grads = naive_row_grads(&b, &grad, stride, off, dim, pooling);
                let mut want: Vec<f64> = table.iter().map(|&x| x as f64).collect();
                let mut want_state: Vec<f64> = state.iter().map(|&x| x as f64).collect();
                let mut scale = vec![0.0; table.len()];
                for (&row, (g, gabs)) in &grads {
                    let row = row as usize;
                    let step = if adagrad {
                        want_state[row] += g.iter().map(|x| x * x).sum::<f64>() / dim as f64;
                        lr as f64 / (want_state[row].sqrt() + eps as f64)
                    } else {
                        lr as f64
                    };
                    for d in 0..dim {
                        want[row * dim + d] -= step * g[d];
                        scale[row * dim + d] = step * gabs[d] * 4.0;
                    }
                }
                let what =
                    format!("bag_backward {pooling:?} adagrad={adagrad} bags={bags} dim={dim}");
                assert_close(&what, &got, &want, &scale, REL, 1e-6);
                if adagrad {
                    let s_scale: Vec<f64> = want_state.iter().map(|s| s.abs()).collect();
                    assert_close(
                        &format!("{what} state"),
                        &got_state,
                        &want_state,
                        &s_scale,
                        REL,
                        1e-7,
                    );
                } else {
                    assert_eq!(got_state, state, "SGD leaves the state alone");
                }
            }
        }
    }
}
