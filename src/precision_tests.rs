//! Tests of the row layouts and of (stochastic) rounding.
use super::*;

fn rows(seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed;
    let mut next = || {
        x = crate::rng::splitmix64(x);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut out = Vec::new();
    for dim in [1usize, 2, 3, 7, 16, 100, 128, 257] {
        out.push((0..dim).map(|_| next()).collect());
        out.push((0..dim).map(|_| 100.0 + 0.01 * next()).collect()); // far from zero, narrow
        out.push((0..dim).map(|_| 1e-3 * next()).collect());
    }
    out.push(vec![0.25; 9]); // constant row: scale 1
    out
}

const ALL: [Precision; 4] = [
    Precision::Fp32,
    Precision::Fp16,
    Precision::Int8,
    Precision::Int4,
];

#[test]
fn row_sizes_follow_the_design_table() {
    let sizes = |d| ALL.map(|p| p.row_bytes(d));
    assert_eq!(sizes(128), [512, 256, 136, 68]);
    assert_eq!(sizes(256), [1024, 512, 264, 132]);
    assert_eq!(sizes(3), [12, 8, 12, 8]);
    assert_eq!(sizes(1), [4, 4, 12, 8]);
    assert!((1..300).all(|d| ALL.iter().all(|p| p.row_bytes(d) % 4 == 0)));
}

#[test]
fn nearest_round_trip_is_within_half_a_step() {
    for p in ALL {
        for row in rows(1) {
            let mut packed = vec![0u32; p.row_words(row.len())];
            quantize_row(p, &row, &mut packed, None);
            let mut back = vec![0f32; row.len()];
            dequantize_row(p, &packed, &mut back);
            let step = row_step(p, &packed, &row);
            for (c, (x, y)) in row.iter().zip(&back).enumerate() {
                // f32 arithmetic in q·scale + bias adds a few ulps of the row's magnitude.
                let slack = 4.0 * f32::EPSILON * (x.abs() + step * 16.0);
                assert!(
                    (x - y).abs() <= step / 2.0 + slack,
                    "{p:?} dim {} col {c}: {x} -> {y}, step {step}",
                    row.len()
                );
            }
        }
    }
}

#[test]
fn stochastic_rounding_is_unbiased() {
    // The mean of 10,000 roundings of each value lies within 3σ of the exact value, where σ is
    // at most step/2/√n (a two-point distribution one step wide).
    let n = 10_000u32;
    for p in [Precision::Fp16, Precision::Int8, Precision::Int4] {
        let row: Vec<f32> = vec![0.0, 0.1234, -0.777, 0.5003, 1.0, 0.33];
        let mut sum = vec![0f64; row.len()];
        let mut packed = vec![0u32; p.row_words(row.len())];
        let mut back = vec![0f32; row.len()];
        let mut step = 0.0;
        for s in 0..n {
            quantize_row(
                p,
                &row,
                &mut packed,
                Some(NoiseKey {
                    seed: 9,
                    step: s,
                    row: 5,
                }),
            );
            dequantize_row(p, &packed, &mut back);
            step = row_step(p, &packed, &row);
            sum.iter_mut().zip(&back).for_each(|(a, b)| *a += *b as f64);
        }
        for (c, x) in row.iter().enumerate() {
            let mean = sum[c] / n as f64;
            let sigma = step as f64 / 2.0 / (n as f64).sqrt();
            assert!(
                (mean - *x as f64).abs() <= 3.0 * sigma + 1e-7,
                "{p:?} col {c}: mean {mean} vs {x} (σ {sigma:e})"
            );
        }
        // And it does round both ways (it is not nearest in disguise).
        quantize_row(p, &row, &mut packed, None);
        let nearest = packed.clone();
        let differs = (0..64).any(|s| {
            quantize_row(
                p,
                &row,
                &mut packed,
                Some(NoiseKey {
                    seed: 1,
                    step: s,
                    row: 0,
                }),
            );
            packed != nearest
        });
        assert!(differs, "{p:?}");
    }
}

#[test]
fn packed_layouts_are_byte_exact() {
    let mut w = vec![0u32; 1];
    quantize_row(Precision::Fp32, &[1.5], &mut w, None);
    assert_eq!(w, [1.5f32.to_bits()]);

    let mut w = vec![0u32; 2];
    quantize_row(Precision::Fp16, &[1.0, -2.0, 0.5], &mut w, None);
    assert_eq!(
        w,
        [0xC000_3C00, 0x0000_3800],
        "f16 little-endian, zero-padded"
    );

    // INT8: bias = min = -1, scale = (254 + 1) / 255 = 1; levels 0, 255, 101, floor(65.5 + .5) = 66,
    // then a second word with the fifth value.
    let mut w = vec![0u32; 4];
    quantize_row(
        Precision::Int8,
        &[-1.0, 254.0, 100.0, 64.5, 0.0],
        &mut w,
        None,
    );
    assert_eq!(
        w,
        [
            1.0f32.to_bits(),
            (-1.0f32).to_bits(),
            0x42_65_FF_00,
            0x0000_0001
        ]
    );

    // INT4: values -1 .. 2 with scale 0.2 exactly representable? No: f16 rounds scale up.
    let mut w = vec![0u32; 2];
    quantize_row(Precision::Int4, &[-1.0, 2.0, 0.5], &mut w, None);
    let scale = f16_ceil((2.0 - -1.0) / 15.0);
    let bias = f16::from_f32(-1.0);
    assert_eq!(w[0], scale.to_bits() as u32 | (bias.to_bits() as u32) << 16);
    let q = |x: f32| ((x + 1.0) / scale.to_f32() + 0.5).floor() as u32;
    assert_eq!(
        w[1],
        q(-1.0) | q(2.0) << 4 | q(0.5) << 8,
        "low nibble first"
    );
    assert_eq!((q(-1.0), q(2.0)), (0, 15));
}

#[test]
fn constant_rows_use_scale_one_and_round_trip_exactly() {
    for p in [Precision::Int8, Precision::Int4] {
        let row = vec![0.75f32; 5];
        let mut w = vec![0u32; p.row_words(5)];
        quantize_row(
            p,
            &row,
            &mut w,
            Some(NoiseKey {
                seed: 1,
                step: 2,
                row: 3,
            }),
        );
        let mut back = vec![0f32; 5];
        dequantize_row(p, &w, &mut back);
        assert_eq!(back, row, "{p:?}");
    }
}

#[test]
fn noise_is_uniform_and_keyed() {
    let n = 100_000;
    let mean: f64 = (0..n)
        .map(|c| rounding_uniform(3, 4, 5, c) as f64)
        .sum::<f64>()
        / n as f64;
    assert!((mean - 0.5).abs() < 0.005, "{mean}");
    assert!((0..1000).all(|c| (0.0..1.0).contains(&rounding_uniform(1, 2, 3, c))));
    assert_ne!(rounding_uniform(1, 2, 3, 4), rounding_uniform(1, 2, 4, 4));
    assert_ne!(rounding_uniform(1, 2, 3, 4), rounding_uniform(1, 3, 3, 4));
    // Pinned: the WGSL and CUDA kernels must produce these very bits.
    assert_eq!(pcg_hash(0), 129_708_002);
    assert_eq!(pcg_hash(1), pcg_hash(1));
}
