//! Bias + activation and the DLRM interaction, forward and backward, against the CPU.

use super::*;
use rowflow::device::kernels::interaction_width;
use rowflow::device::{
    Activation, BiasActBackward, BiasActForward, BiasActShape, InteractionBackward,
    InteractionForward, InteractionShape,
};

pub fn bias_act_parity<D: Device>(dev: &D, cpu: &CpuDevice, backward: bool) {
    let mut r = rng(seed("bias_act_parity"));
    for (rows, cols) in [(1, 1), (63, 3), (64, 64), (65, 100), (1000, 17)] {
        for act in [Activation::Relu, Activation::Identity] {
            let (x, bias, dy) = (
                uniform(&mut r, rows * cols),
                uniform(&mut r, cols),
                uniform(&mut r, rows * cols),
            );
            let (got, want) = both!(dev, cpu, |d| {
                let xb = d.buffer_from_f32(&x).unwrap();
                let bb = d.buffer_from_f32(&bias).unwrap();
                let shape = BiasActShape {
                    rows: rows as u32,
                    cols: cols as u32,
                    act,
                };
                d.bias_act_forward(&BiasActForward {
                    x: &xb,
                    bias: &bb,
                    shape,
                })
                .unwrap();
                let mut out = d.read_f32(&xb, 0..rows * cols).unwrap();
                if backward {
                    let (dyb, db) = (
                        d.buffer_from_f32(&dy).unwrap(),
                        d.alloc_elems(cols).unwrap(),
                    );
                    d.bias_act_backward(&BiasActBackward {
                        y: &xb,
                        dy: &dyb,
                        dbias: &db,
                        shape,
                    })
                    .unwrap();
                    out = d.read_f32(&dyb, 0..rows * cols).unwrap();
                    out.extend(d.read_f32(&db, 0..cols).unwrap());
                }
                out
            });
            assert_parity(
                &format!("bias_act backward={backward} {act:?} {rows}x{cols}"),
                &got,
                &want,
                SUM,
            );
        }
    }
}

pub fn interaction_parity<D: Device>(dev: &D, cpu: &CpuDevice, backward: bool) {
    let mut r = rng(seed("interaction_parity"));
    for (batch, tables, dim) in [
        (1, 1, 1),
        (63, 3, 3),
        (64, 8, 16),
        (65, 2, 100),
        (40, 26, 16),
        (7, 4, 128),
    ] {
        let width = interaction_width(tables as u32, dim as u32) as usize;
        let (dense, emb, dout) = (
            uniform(&mut r, batch * dim),
            uniform(&mut r, batch * tables * dim),
            uniform(&mut r, batch * width),
        );
        let (got, want) = both!(dev, cpu, |d| {
            let (db, eb) = (
                d.buffer_from_f32(&dense).unwrap(),
                d.buffer_from_f32(&emb).unwrap(),
            );
            let shape = InteractionShape {
                batch: batch as u32,
                tables: tables as u32,
                dim: dim as u32,
            };
            if backward {
                let (gb, ddb, deb) = (
                    d.buffer_from_f32(&dout).unwrap(),
                    d.alloc_elems(batch * dim).unwrap(),
                    d.alloc_elems(batch * tables * dim).unwrap(),
                );
                d.interaction_backward(&InteractionBackward {
                    dense: &db,
                    emb: &eb,
                    dout: &gb,
                    ddense: &ddb,
                    demb: &deb,
                    shape,
                })
                .unwrap();
                let mut out = d.read_f32(&ddb, 0..batch * dim).unwrap();
                out.extend(d.read_f32(&deb, 0..batch * tables * dim).unwrap());
                out
            } else {
                let ob = d.alloc_elems(batch * width).unwrap();
                d.interaction_forward(&InteractionForward {
                    dense: &db,
                    emb: &eb,
                    out: &ob,
                    shape,
                })
                .unwrap();
                d.read_f32(&ob, 0..batch * width).unwrap()
            }
        });
        assert_parity(
            &format!("interaction backward={backward} {batch}x{tables}x{dim}"),
            &got,
            &want,
            SUM,
        );
    }
}
