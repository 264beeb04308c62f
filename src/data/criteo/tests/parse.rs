//! One line into one sample: the dense transform, the hashing of categorical values into rows,
//! multi-hot fields.

use super::*;
use crate::rng::mix64;

#[test]
fn dense_transform_is_exact() {
    let parser = Parser::new(&[1000; NUM_SPARSE], &MultiHotColumns::default()).unwrap();
    let values = ["", "-5", "0", "1", "1000", "+7", "-9223372036854775808"];
    let mut f = fields(0);
    for (k, v) in values.iter().enumerate() {
        f[1 + k] = v.to_string();
    }
    f[8] = "9223372036854775807".to_string();
    let s = parse(&parser, &f.join("\t")).unwrap();
    let ln1p = |x: f64| x.ln_1p() as f32;
    assert_eq!(
        s.dense[..7],
        [
            0.0,
            0.0,
            0.0,
            std::f32::consts::LN_2,
            ln1p(1000.0),
            ln1p(7.0),
            0.0
        ]
    );
    assert_eq!(s.dense[7], ln1p(i64::MAX as f64));
    assert_eq!(s.label, 0.0);
    let s = parse(&parser, &line(1)).unwrap();
    assert_eq!(s.label, 1.0);
    assert_eq!(s.dense[0], std::f32::consts::LN_2);
}

#[test]
fn missing_categorical_is_row_zero() {
    let parser = Parser::new(&[1000; NUM_SPARSE], &MultiHotColumns::default()).unwrap();
    let mut f = fields(3);
    f[14] = String::new();
    let s = parse(&parser, &f.join("\t")).unwrap();
    assert_eq!(s.rows[0], 0);
    assert_eq!(s.rows[NUM_SPARSE - 1], 0);
    assert!(s.rows[1..NUM_SPARSE - 1].iter().all(|&r| r > 0));
}

#[test]
fn hex_is_case_insensitive() {
    let parser = Parser::new(&[1_000_003; NUM_SPARSE], &MultiHotColumns::default()).unwrap();
    let upper = parse(&parser, &line_with(0, 20, "DEADBEEF")).unwrap();
    let lower = parse(&parser, &line_with(0, 20, "deadbeef")).unwrap();
    let mixed = parse(&parser, &line_with(0, 20, "DeAdBeEf")).unwrap();
    assert_eq!(upper.rows, lower.rows);
    assert_eq!(upper.rows, mixed.rows);
    assert_eq!(upper.rows[6], parser.row(6, 0xdead_beef));
    // Short and 16-digit values are fine too.
    assert!(parse(&parser, &line_with(0, 20, "1")).is_ok());
    assert!(parse(&parser, &line_with(0, 20, "FFFFffffFFFFffff")).is_ok());
}

#[test]
fn hash_matches_the_documented_formula() {
    // The first output of the reference splitmix64 generator seeded with 0.
    assert_eq!(mix64(0x9E37_79B9_7F4A_7C15), 0xE220_A839_7B1D_CDAF);
    let parser = Parser::new(&[1000; NUM_SPARSE], &MultiHotColumns::default()).unwrap();
    // C1 (c = 0): salt = 1 × golden ratio, so value 0 mixes the golden ratio itself.
    assert_eq!(
        parser.row(0, 0),
        1 + (0xE220_A839_7B1D_CDAF_u64 % 999) as u32
    );
    let salt = 3u64.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    assert_eq!(
        parser.row(2, 0x1234),
        1 + (mix64(0x1234 ^ salt) % 999) as u32
    );
    // Different fields hash the same value differently.
    let rows: Vec<u32> = (0..NUM_SPARSE).map(|c| parser.row(c, 0xabcd)).collect();
    assert!(rows.iter().any(|&r| r != rows[0]));
}

#[test]
fn rows_stay_in_range() {
    let sizes: Vec<u32> = (0..NUM_SPARSE as u32).map(|c| 2 + c * c * 13).collect();
    let parser = Parser::new(&sizes, &MultiHotColumns::default()).unwrap();
    for v in (0..2000u64)
        .map(|i| i.wrapping_mul(0x0123_4567_89AB_CDEF))
        .chain([u64::MAX])
    {
        for (c, &rows) in sizes.iter().enumerate() {
            let r = parser.row(c, v);
            assert!(
                (1..rows).contains(&r),
                "row {r} of table {c} with {rows} rows"
            );
        }
    }
    let s = parse(&parser, &line(5)).unwrap();
    assert_eq!(s.rows[0], 1, "a 2-row table maps every value to row 1");
    let mut seen = vec![false; sizes[5] as usize];
    for v in 0..20_000u64 {
        seen[parser.row(5, v) as usize] = true;
    }
    assert!(
        seen[1..].iter().all(|&s| s),
        "every non-missing row is reachable"
    );
}

#[test]
fn multi_hot_fields_become_sequences_hashed_like_one_hot_values() {
    let multi = MultiHotColumns {
        columns: vec![2],
        separator: b',',
    };
    let parser = Parser::new(&[1000; NUM_SPARSE], &multi).unwrap();
    let one_hot = Parser::new(&[1000; NUM_SPARSE], &MultiHotColumns::default()).unwrap();
    // C3 is field 16 of the line (label, I1..I13, C1, C2, C3).
    let s = parse(&parser, &line_with(0, 16, "a1,b2,A1")).unwrap();
    let row = |v: &str| parse(&one_hot, &line_with(0, 16, v)).unwrap().rows[2];
    assert_eq!(s.lists[2], vec![row("a1"), row("b2"), row("a1")]);
    let mut batch = Batch::new(NUM_DENSE, NUM_SPARSE);
    s.push_into(&mut batch);
    assert_eq!(batch.sparse[2].bag(0).len(), 3);
    assert_eq!(batch.sparse[3].bag(0).len(), 1, "other fields stay one-hot");
    // The raw values stay beside their rows, for hashing representations (DHE).
    assert_eq!(batch.sparse[2].raw, vec![0xa1, 0xb2, 0xa1]);
    let missing = parse(&parser, &line_with(0, 16, "")).unwrap();
    assert_eq!(missing.raw_lists[2], vec![crate::data::criteo::MISSING_ID]);
    let one = parse(&one_hot, &line_with(0, 17, "00ff00ff")).unwrap();
    assert_eq!(one.raw[3], 0x00ff_00ff);
    assert_eq!(
        parse(&parser, &line_with(0, 16, "")).unwrap().lists[2],
        vec![0]
    );
    let e = parse(&parser, &line_with(0, 16, "a1,,b2")).unwrap_err();
    assert_eq!(e.field, Some(16));
    assert!(e.message.contains("between separators"), "{}", e.message);
    let bad = MultiHotColumns {
        columns: vec![30],
        ..Default::default()
    };
    assert!(Parser::new(&[1000; NUM_SPARSE], &bad).is_err());
}
