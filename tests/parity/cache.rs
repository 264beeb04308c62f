//! Parity of the cache kernels and of training through a cache.

use super::*;

pub fn quantize_parity<D: Device>(dev: &D, cpu: &CpuDevice, stochastic: bool) {
    use rowflow::device::{DequantizeRows, QuantizeRows, RowMove, StateRows};
    use rowflow::precision::{Precision, Rounding};
    let mut r = rng(seed("quantize_parity"));
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
                    d.buffer_from_f32(&cache).unwrap(),
                    d.buffer_from_u32(&picked).unwrap(),
                    d.buffer_from_u32(&ids).unwrap(),
                );
                let (packed, csb, stb) = (
                    d.alloc_elems(n * words).unwrap(),
                    d.buffer_from_f32(&state).unwrap(),
                    d.alloc_elems(n).unwrap(),
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
                })
                .unwrap();
                // Round trip into a second cache, at other slots.
                let back = d.alloc_elems(slots as usize * dim).unwrap();
                let other: Vec<u32> = picked.iter().map(|s| slots - 1 - s).collect();
                let ob = d.buffer_from_u32(&other).unwrap();
                let state2 = d.alloc_elems(slots as usize).unwrap();
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
                })
                .unwrap();
                let mut out = d.read_f32(&back, 0..slots as usize * dim).unwrap();
                out.extend(d.read_f32(&state2, 0..slots as usize).unwrap());
                out
            });
            // One quantization level of these rows (range 0.2) at most: INT4 0.2/15.
            let level = match precision {
                Precision::Int4 => 0.2 / 15.0,
                Precision::Int8 => 0.2 / 255.0,
                Precision::Fp16 => 1e-4,
                Precision::Fp32 => 0.0,
            };
            assert_parity(
                &format!("quantize+dequantize {precision:?} stochastic={stochastic} dim {dim}"),
                &got,
                &want,
                (0.0, 1.01 * level + 1e-7),
            );
        }
    }
}

/// Thirty steps with an LRU cache over an INT8 store and stochastic rounding: the backends
/// draw the same rounding noise, so they train alike.
pub fn cached_training_parity<D: Device>(dev: &D, cpu: &CpuDevice) {
    use rowflow::embedding::Policy;
    use rowflow::precision::{Precision, Rounding};
    let seed = seed("cached_training_parity");
    let rows = [500u32, 2000, 50, 1000];
    let opts = SyntheticOptions {
        tables: 4,
        train_samples: 30 * 128,
        test_samples: 300,
        ..Default::default()
    };
    let data = SyntheticDataset::new(&opts, &rows, seed).unwrap();
    let schema: Schema = data.schema().clone();
    let cfg = ModelConfig {
        embedding_optimizer: Optimizer::Adagrad,
        ..Default::default()
    };
    let placement = Placement {
        policy: Policy::Lru,
        precision: Precision::Int8,
        rounding: Rounding::Stochastic,
        cache_rows: vec![300, 400, 50, 300],
    };
    let mut a = Dlrm::new(dev, &cfg, &schema, placement.clone(), 512, seed).unwrap();
    let mut b = Dlrm::new(cpu, &cfg, &schema, placement, 512, seed).unwrap();
    let mut stream = data.open_train().unwrap();
    let mut batch = Batch::new(schema.num_dense, 4);
    for step in 0..30 {
        stream.next_batch(128, &mut batch).unwrap();
        let maps: Vec<RowMap> = batch.sparse.iter().map(RowMap::from_bags).collect();
        let la = a
            .train_step(dev, &batch, &maps, Residency::OnDemand, 0.05)
            .unwrap()
            .loss;
        let lb = b
            .train_step(cpu, &batch, &maps, Residency::OnDemand, 0.05)
            .unwrap()
            .loss;
        assert!(
            (la - lb).abs() <= 1e-4 * lb.abs(),
            "step {step}: loss {la} vs cpu {lb}"
        );
        let (sa, sb) = (a.embeddings().stats(), b.embeddings().stats());
        assert_eq!(
            sa.iter()
                .map(|s| (s.hits, s.misses, s.evictions))
                .collect::<Vec<_>>(),
            sb.iter()
                .map(|s| (s.hits, s.misses, s.evictions))
                .collect::<Vec<_>>()
        );
    }
    for t in 0..4 {
        let (wa, wb) = (
            a.embeddings().read_table(dev, t).unwrap(),
            b.embeddings().read_table(cpu, t).unwrap(),
        );
        let mean: f64 = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| ((x - y) as f64).abs())
            .sum::<f64>()
            / wa.len() as f64;
        assert!(mean < 1e-5, "table {t}: mean |Δw| {mean}");
    }
}
