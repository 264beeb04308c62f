//! Row (de)quantization kernels against the reference functions of `embedding::precision`:
//! bit for bit on the CPU; on other backends within one quantization level (GPU division may
//! round differently at a level boundary) and one ulp of the dequantized values (fused
//! multiply-adds).

use super::*;
use rowflow::device::{BackendKind, DequantizeRows, QuantizeRows, RowMove, StateRows};
use rowflow::precision::{NoiseKey, dequantize_row, quantize_row, row_step};
use rowflow::precision::{Precision, Rounding};

const PRECISIONS: [Precision; 4] = [
    Precision::Fp32,
    Precision::Fp16,
    Precision::Int8,
    Precision::Int4,
];

/// `n` distinct slots below `slots`, shuffled.
fn distinct_slots(r: &mut rand_pcg::Pcg64Mcg, n: usize, slots: u32) -> Vec<u32> {
    let mut all: Vec<u32> = (0..slots).collect();
    for i in (1..all.len()).rev() {
        all.swap(i, r.random_range(0..=i));
    }
    all.truncate(n);
    all
}

pub fn quantize_rows_match_reference<D: Device>(dev: &D) {
    let mut r = rng(seed("quantize_rows"));
    let exact = dev.info().backend == BackendKind::Cpu;
    for dim in [1usize, 3, 8, 16, 65, 128] {
        let (slots, n) = (97u32, 40usize);
        let mut cache = uniform(&mut r, slots as usize * dim);
        // Rows far from zero with a narrow range, and constant rows.
        for v in &mut cache[..dim] {
            *v = 100.0 + *v * 0.01;
        }
        cache[dim..2 * dim].fill(0.5);
        let state: Vec<f32> = (0..slots).map(|i| i as f32 * 0.25).collect();
        let picked = distinct_slots(&mut r, n, slots);
        let mut picked_with_special = picked.clone();
        picked_with_special[0] = 0;
        picked_with_special[1] = 1;
        let picked = if picked[2..].contains(&0) || picked[2..].contains(&1) {
            picked
        } else {
            picked_with_special
        };
        let ids: Vec<u32> = (0..n as u32).map(|i| i * 7919 + 3).collect();
        for p in PRECISIONS {
            for rounding in [Rounding::Nearest, Rounding::Stochastic] {
                let words = p.row_words(dim);
                let (cb, sb, ib) = (
                    dev.buffer_from_f32(&cache).unwrap(),
                    dev.buffer_from_u32(&picked).unwrap(),
                    dev.buffer_from_u32(&ids).unwrap(),
                );
                let (out, csb, stb) = (
                    dev.alloc_elems(n * words).unwrap(),
                    dev.buffer_from_f32(&state).unwrap(),
                    dev.alloc_elems(n).unwrap(),
                );
                dev.quantize_rows(&QuantizeRows {
                    moved: RowMove {
                        packed: &out,
                        slots: &sb,
                        cache: &cb,
                        cache_rows: slots,
                        rows: n as u32,
                        dim: dim as u32,
                        precision: p,
                        state: Some(StateRows {
                            cache_state: &csb,
                            staged: &stb,
                        }),
                    },
                    row_ids: &ib,
                    rounding,
                    seed: 77,
                    step: 5,
                })
                .unwrap();
                let mut got = vec![0u32; n * words];
                dev.download(&out, 0, bytemuck::cast_slice_mut(&mut got))
                    .unwrap();
                for (i, &s) in picked.iter().enumerate() {
                    let src = &cache[s as usize * dim..][..dim];
                    let mut want = vec![0u32; words];
                    let noise = (rounding == Rounding::Stochastic).then_some(NoiseKey {
                        seed: 77,
                        step: 5,
                        row: ids[i],
                    });
                    quantize_row(p, src, &mut want, noise);
                    let g = &got[i * words..][..words];
                    if exact || g == want.as_slice() {
                        assert_eq!(g, want.as_slice(), "{p:?} {rounding:?} dim {dim} row {i}");
                        continue;
                    }
                    let (mut a, mut b) = (vec![0f32; dim], vec![0f32; dim]);
                    dequantize_row(p, g, &mut a);
                    dequantize_row(p, &want, &mut b);
                    let level = row_step(p, &want, src);
                    for c in 0..dim {
                        assert!(
                            (a[c] - b[c]).abs() <= 1.01 * level + 1e-6 * b[c].abs(),
                            "{p:?} {rounding:?} dim {dim} row {i} col {c}: {} vs {}",
                            a[c],
                            b[c]
                        );
                    }
                }
                let staged = dev.read_f32(&stb, 0..n).unwrap();
                assert!(
                    picked
                        .iter()
                        .zip(&staged)
                        .all(|(&s, &v)| v == state[s as usize]),
                    "state travels with its row"
                );
            }
        }
    }
}

pub fn dequantize_rows_match_reference<D: Device>(dev: &D) {
    let mut r = rng(seed("dequantize_rows"));
    let exact = dev.info().backend == BackendKind::Cpu;
    for dim in [1usize, 3, 8, 16, 65, 128] {
        let (slots, n) = (97u32, 40usize);
        for p in PRECISIONS {
            let words = p.row_words(dim);
            let values = uniform(&mut r, n * dim);
            let mut packed = vec![0u32; n * words];
            for i in 0..n {
                quantize_row(
                    p,
                    &values[i * dim..][..dim],
                    &mut packed[i * words..][..words],
                    None,
                );
            }
            let picked = distinct_slots(&mut r, n, slots);
            let staged: Vec<f32> = (0..n).map(|i| 1.0 + i as f32).collect();
            let cache = dev
                .buffer_from_f32(&vec![-7.0; slots as usize * dim])
                .unwrap();
            let cache_state = dev.buffer_from_f32(&vec![-1.0; slots as usize]).unwrap();
            let (pb, sb, stb) = (
                dev.buffer_from_u32(&packed).unwrap(),
                dev.buffer_from_u32(&picked).unwrap(),
                dev.buffer_from_f32(&staged).unwrap(),
            );
            dev.dequantize_rows(&DequantizeRows {
                moved: RowMove {
                    packed: &pb,
                    slots: &sb,
                    cache: &cache,
                    cache_rows: slots,
                    rows: n as u32,
                    dim: dim as u32,
                    precision: p,
                    state: Some(StateRows {
                        cache_state: &cache_state,
                        staged: &stb,
                    }),
                },
            })
            .unwrap();
            let got = dev.read_f32(&cache, 0..slots as usize * dim).unwrap();
            let got_state = dev.read_f32(&cache_state, 0..slots as usize).unwrap();
            for s in 0..slots as usize {
                let row = &got[s * dim..][..dim];
                match picked.iter().position(|&x| x as usize == s) {
                    Some(i) => {
                        let mut want = vec![0f32; dim];
                        dequantize_row(p, &packed[i * words..][..words], &mut want);
                        if exact {
                            assert_eq!(row, want.as_slice(), "{p:?} dim {dim} slot {s}");
                        } else {
                            assert!(
                                row.iter()
                                    .zip(&want)
                                    .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1e-3)),
                                "{p:?} dim {dim} slot {s}"
                            );
                        }
                        assert_eq!(got_state[s], staged[i]);
                    }
                    None => {
                        assert!(row.iter().all(|&x| x == -7.0), "slot {s} is untouched");
                        assert_eq!(got_state[s], -1.0);
                    }
                }
            }
        }
    }
    if exact {
        // Two rows into one slot, or a slot past the cache: errors, not panics.
        let (pb, cache) = (dev.alloc_elems(8).unwrap(), dev.alloc_elems(16).unwrap());
        for bad in [[3u32, 3], [0, 4]] {
            let sb = dev.buffer_from_u32(&bad).unwrap();
            let e = dev.dequantize_rows(&DequantizeRows {
                moved: RowMove {
                    packed: &pb,
                    slots: &sb,
                    cache: &cache,
                    cache_rows: 4,
                    rows: 2,
                    dim: 4,
                    precision: Precision::Fp32,
                    state: None,
                },
            });
            assert!(e.is_err(), "{bad:?}");
        }
    }
}
