//! Parity of the cache kernels and of training through a cache.

use super::*;

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
