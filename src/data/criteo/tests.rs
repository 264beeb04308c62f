//! Tests of the Criteo reader (kept apart to keep `criteo.rs` readable).
use super::lines::MAX_LINE;
use super::parse::{LineError, Parser, Sample};
use super::*;
use crate::rng::mix64;
use std::io::Write;
use tempfile::TempDir;

/// The 40 fields of valid sample `i`: label `i % 2`, `I1 = i` (identifies the sample), `I2`
/// missing, `I3 = -3`, other dense values distinct, `C26` missing, other hex values distinct.
fn fields(i: usize) -> Vec<String> {
    let mut f = vec![
        (i % 2).to_string(),
        i.to_string(),
        String::new(),
        "-3".to_string(),
    ];
    f.extend((4..=NUM_DENSE).map(|k| (i * 7 + k).to_string()));
    f.extend((0..NUM_SPARSE - 1).map(|c| format!("{:08x}", i * 1000 + c * 37 + 0xabc0)));
    f.push(String::new());
    f
}

fn line(i: usize) -> String {
    fields(i).join("\t")
}

/// Sample `i` with field `field` (0 = label, 1..=13 = I, 14.. = C) replaced by `value`.
fn line_with(i: usize, field: usize, value: &str) -> String {
    let mut f = fields(i);
    f[field] = value.to_string();
    f.join("\t")
}

/// Samples `0 .. n`, one per LF-terminated line.
fn text(n: usize) -> String {
    (0..n).map(|i| line(i) + "\n").collect()
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn options(path: &Path) -> CriteoOptions {
    CriteoOptions {
        path: path.to_path_buf(),
        table_rows: vec![1000; NUM_SPARSE],
        test_fraction: 0.25,
        skip_bad_lines: false,
        multi_hot: Default::default(),
    }
}

fn open(path: &Path) -> CriteoDataset {
    CriteoDataset::open(options(path)).unwrap()
}

fn open_err(options: CriteoOptions) -> DataError {
    CriteoDataset::open(options).unwrap_err()
}

/// The sample ids (`I1`) of a batch.
fn ids(batch: &Batch) -> Vec<usize> {
    (0..batch.len())
        .map(|s| f64::from(batch.dense[s * NUM_DENSE]).exp_m1().round() as usize)
        .collect()
}

/// `count` batches of `batch_size` from a fresh training stream.
fn batches(ds: &CriteoDataset, batch_size: usize, count: usize) -> Vec<Batch> {
    let mut stream = ds.open_train().unwrap();
    (0..count)
        .map(|_| {
            let mut out = Batch::new(0, 0);
            stream.next_batch(batch_size, &mut out).unwrap();
            out
        })
        .collect()
}

fn parse(parser: &Parser, line: &str) -> Result<Sample, LineError> {
    let mut s = Sample::default();
    parser.parse(line.as_bytes(), &mut s).map(|()| s)
}

#[test]
fn lf_and_crlf_parse_identically() {
    let dir = TempDir::new().unwrap();
    let lf = open(&write(&dir, "lf.tsv", text(12).as_bytes()));
    let crlf_text = text(12).replace('\n', "\r\n");
    let crlf = open(&write(&dir, "crlf.tsv", crlf_text.as_bytes()));
    assert_eq!(lf.test(), crlf.test());
    assert_eq!(lf.train_samples(), crlf.train_samples());
    assert_eq!(batches(&lf, 3, 5), batches(&crlf, 3, 5));
}

#[test]
fn last_line_without_newline_is_read() {
    let dir = TempDir::new().unwrap();
    let full = open(&write(&dir, "a.tsv", text(8).as_bytes()));
    let cut = text(8);
    let cut = cut.strip_suffix('\n').unwrap();
    assert!(cut.ends_with('\t'), "the last field (C26) is empty");
    let cut = open(&write(&dir, "b.tsv", cut.as_bytes()));
    assert_eq!(full.test(), cut.test());
    assert_eq!(ids(cut.test()), vec![6, 7]);
}

#[test]
fn gzip_parses_like_plain() {
    let dir = TempDir::new().unwrap();
    let plain = open(&write(&dir, "plain.tsv.gz", text(12).as_bytes()));
    // Detected by content, not by name.
    let gz = open(&write(&dir, "data.tsv", &gzip(text(12).as_bytes())));
    assert_eq!(plain.test(), gz.test());
    assert_eq!(plain.train_samples(), gz.train_samples());
    assert_eq!(batches(&plain, 4, 6), batches(&gz, 4, 6));
    // Several gzip members, as from `cat a.gz b.gz`.
    let t = text(12);
    let (a, b) = t.split_at(t.len() / 3);
    let multi = [gzip(a.as_bytes()), gzip(b.as_bytes())].concat();
    let multi = open(&write(&dir, "multi.gz", &multi));
    assert_eq!(plain.test(), multi.test());
    assert_eq!(batches(&plain, 4, 6), batches(&multi, 4, 6));
}

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
fn test_split_is_the_last_samples() {
    let dir = TempDir::new().unwrap();
    // 13 samples × 0.25 = 3.25 → 3 test samples, 10 training samples.
    let ds = open(&write(&dir, "d.tsv", text(13).as_bytes()));
    assert_eq!(ds.train_samples(), 10);
    let test = ds.test();
    assert_eq!(test.len(), 3);
    assert_eq!(test.num_dense, NUM_DENSE);
    assert_eq!(ids(test), vec![10, 11, 12]);
    assert_eq!(test.labels, vec![0.0, 1.0, 0.0]);
    let parser = Parser::new(&[1000; NUM_SPARSE], &MultiHotColumns::default()).unwrap();
    assert_eq!(test.sparse.len(), NUM_SPARSE);
    for (k, i) in (10..13).enumerate() {
        let s = parse(&parser, &line(i)).unwrap();
        assert_eq!(test.dense[k * NUM_DENSE..(k + 1) * NUM_DENSE], s.dense);
        for (c, bags) in test.sparse.iter().enumerate() {
            assert_eq!(bags.bag(k), [s.rows[c]]);
        }
    }
    // Rounding and clamping of the split.
    let tiny = open(&write(&dir, "tiny.tsv", text(2).as_bytes()));
    assert_eq!((tiny.train_samples(), tiny.test().len()), (1, 1));
    let mut opts = options(&write(&dir, "e.tsv", text(4).as_bytes()));
    opts.test_fraction = 0.999;
    let most = CriteoDataset::open(opts).unwrap();
    assert_eq!((most.train_samples(), ids(most.test())), (1, vec![1, 2, 3]));
}

#[test]
fn stream_wraps_around_and_drops_the_partial_batch() {
    let dir = TempDir::new().unwrap();
    let ds = open(&write(&dir, "d.tsv", text(13).as_bytes()));
    assert_eq!(ds.train_samples(), 10);
    let got: Vec<Vec<usize>> = batches(&ds, 4, 5).iter().map(ids).collect();
    let (a, b): (Vec<usize>, Vec<usize>) = ((0..4).collect(), (4..8).collect());
    assert_eq!(got, vec![a.clone(), b.clone(), a.clone(), b, a]);
    let got: Vec<Vec<usize>> = batches(&ds, 10, 2).iter().map(ids).collect();
    assert_eq!(got, vec![(0..10).collect::<Vec<_>>(); 2]);
    // Batch layout: 26 tables with one row per sample.
    let batch = &batches(&ds, 3, 1)[0];
    assert_eq!(batch.dense.len(), 3 * NUM_DENSE);
    assert_eq!(batch.labels, vec![0.0, 1.0, 0.0]);
    assert!(batch.sparse.iter().all(|b| b.offsets == [0, 1, 2, 3]));
}

#[test]
fn malformed_lines_name_the_line_and_field() {
    let dir = TempDir::new().unwrap();
    let long = "a".repeat(60);
    let cases: Vec<(String, Option<&str>, String)> = vec![
        (
            line_with(0, 0, "2"),
            Some("label"),
            r#"expected 0 or 1, found "2""#.into(),
        ),
        (
            line_with(0, 0, ""),
            Some("label"),
            r#"expected 0 or 1, found """#.into(),
        ),
        (
            line_with(0, 0, "1.0"),
            Some("label"),
            r#"expected 0 or 1, found "1.0""#.into(),
        ),
        (
            line_with(0, 3, "4.5"),
            Some("I3"),
            r#"expected an integer, found "4.5""#.into(),
        ),
        (
            line_with(0, 13, "-"),
            Some("I13"),
            r#"expected an integer, found "-""#.into(),
        ),
        (
            line_with(0, 1, " 5"),
            Some("I1"),
            r#"expected an integer, found " 5""#.into(),
        ),
        (
            line_with(0, 2, "99999999999999999999"),
            Some("I2"),
            r#"expected an integer that fits in 64 bits, found "99999999999999999999""#.into(),
        ),
        (
            line_with(0, 18, "zz12"),
            Some("C5"),
            r#"expected 1 to 16 hex digits, found "zz12""#.into(),
        ),
        (
            line_with(0, 39, "0123456789abcdef0"),
            Some("C26"),
            r#"expected 1 to 16 hex digits, found "0123456789abcdef0""#.into(),
        ),
        (
            line_with(0, 14, &long),
            Some("C1"),
            format!("expected 1 to 16 hex digits, found {:?}...", &long[..40]),
        ),
        (
            line_with(0, 20, "ab\u{e9}"),
            Some("C7"),
            r#"expected 1 to 16 hex digits, found "abé""#.into(),
        ),
        (
            fields(0)[1..].join("\t"),
            None,
            "expected 40 tab-separated fields (label, I1..I13, C1..C26), found 39".into(),
        ),
        (
            line(0) + "\t",
            None,
            "expected 40 tab-separated fields (label, I1..I13, C1..C26), found 41".into(),
        ),
    ];
    for (bad, field, message) in cases {
        // Line 1 valid, line 2 blank, line 3 bad, then more valid lines.
        let content = format!("{}\n\n{bad}\n{}", line(1), text(5));
        let path = write(&dir, "bad.tsv", content.as_bytes());
        let err = open_err(options(&path));
        let prefix = match field {
            Some(f) => format!("{}:3: field {f}: ", path.display()),
            None => format!("{}:3: ", path.display()),
        };
        let msg = err.to_string();
        assert!(msg.starts_with(&prefix), "{msg}");
        assert_eq!(msg, format!("{prefix}{message}"));
        match err {
            DataError::Malformed { line, field: f, .. } => {
                assert_eq!((line, f.as_deref()), (3, field));
            }
            other => panic!("{other:?}"),
        }
    }
    // Non-UTF-8 bytes are an error for their field only.
    let mut bytes = [line(0).as_bytes(), b"\n", line_with(1, 5, "7").as_bytes()].concat();
    let at = line(0).len() + 1 + fields(1)[..5].iter().map(|f| f.len() + 1).sum::<usize>();
    bytes.insert(at, 0xff);
    let path = write(&dir, "utf8.tsv", &bytes);
    let msg = open_err(options(&path)).to_string();
    let expected = format!(
        "{}:2: field I5: expected an integer, found \"\u{fffd}7\"",
        path.display()
    );
    assert_eq!(msg, expected);
}

#[test]
fn overlong_lines_are_malformed() {
    let dir = TempDir::new().unwrap();
    let content = format!("{}\n{}\n{}", line(0), "9".repeat(MAX_LINE + 10), text(4));
    let path = write(&dir, "long.tsv", content.as_bytes());
    let msg = open_err(options(&path)).to_string();
    assert!(msg.starts_with(&format!("{}:2: expected a line of at most", path.display())));
    let mut opts = options(&path);
    opts.skip_bad_lines = true;
    let ds = CriteoDataset::open(opts).unwrap();
    assert_eq!(
        (ds.skipped_lines(), ds.train_samples(), ds.test().len()),
        (1, 4, 1)
    );
    assert_eq!(ids(ds.test()), vec![3]);
}

#[test]
fn skip_bad_lines_skips_and_counts() {
    let dir = TempDir::new().unwrap();
    let mut content = String::new();
    for i in 0..13 {
        content += &(line(i) + "\n");
        if i % 2 == 0 {
            content += &(line_with(i, 3, "x") + "\n");
        }
    }
    let path = write(&dir, "d.tsv", content.as_bytes());
    let mut opts = options(&path);
    assert!(matches!(
        open_err(opts.clone()),
        DataError::Malformed { line: 2, .. }
    ));
    opts.skip_bad_lines = true;
    let ds = CriteoDataset::open(opts).unwrap();
    assert_eq!(ds.skipped_lines(), 7);
    assert_eq!(ds.skipped_examples().len(), 5);
    let first = format!(
        "{}:2: field I3: expected an integer, found \"x\"",
        path.display()
    );
    assert_eq!(ds.skipped_examples()[0], first);
    assert!(ds.skipped_examples()[1].starts_with(&format!("{}:5: field I3:", path.display())));
    assert_eq!(ds.train_samples(), 10);
    assert_eq!(ids(ds.test()), vec![10, 11, 12]);
    let got: Vec<Vec<usize>> = batches(&ds, 4, 3).iter().map(ids).collect();
    assert_eq!(
        got,
        vec![
            (0..4).collect::<Vec<_>>(),
            (4..8).collect(),
            (0..4).collect()
        ]
    );
}

#[test]
fn blank_lines_are_skipped_but_counted() {
    let dir = TempDir::new().unwrap();
    let content = format!(
        "\n  \r\n{}\n\t \n\n{}{}\n",
        line(0),
        text(5),
        line_with(0, 0, "x")
    );
    let path = write(&dir, "d.tsv", content.as_bytes());
    let msg = open_err(options(&path)).to_string();
    assert!(
        msg.starts_with(&format!("{}:11: field label: ", path.display())),
        "{msg}"
    );
    let content = format!(
        "\n  \r\n{}\n\t \n\n{}\n\n",
        line(0),
        text(5).strip_suffix('\n').unwrap()
    );
    let ds = open(&write(&dir, "e.tsv", content.as_bytes()));
    assert_eq!((ds.train_samples(), ds.skipped_lines()), (4, 0));
    assert_eq!(ids(ds.test()), vec![3, 4]);
    let got: Vec<Vec<usize>> = batches(&ds, 4, 2).iter().map(ids).collect();
    assert_eq!(got, vec![vec![0, 0, 1, 2]; 2]);
}

#[test]
fn files_without_samples_are_rejected() {
    let dir = TempDir::new().unwrap();
    let no_samples = |path: &Path, skip: bool| {
        let mut opts = options(path);
        opts.skip_bad_lines = skip;
        match open_err(opts) {
            DataError::NoSamples { path: p, message } => {
                assert_eq!(p, path);
                message
            }
            other => panic!("{other:?}"),
        }
    };
    let empty = write(&dir, "empty.tsv", b"");
    assert_eq!(no_samples(&empty, false), "no samples: the file is empty");
    let err = open_err(options(&empty)).to_string();
    assert_eq!(
        err,
        format!("{}: no samples: the file is empty", empty.display())
    );
    let gz = write(&dir, "empty.gz", &gzip(b""));
    assert!(no_samples(&gz, false).contains("no samples"));
    let blank = write(&dir, "blank.tsv", b"\n \n\r\n");
    assert_eq!(
        no_samples(&blank, false),
        "no samples: all 3 lines are blank"
    );
    let bad: String = (0..12).map(|i| line_with(i, 0, "x") + "\n").collect();
    let bad = write(&dir, "bad.tsv", bad.as_bytes());
    let msg = no_samples(&bad, true);
    assert!(
        msg.starts_with("no valid samples: all 12 lines were malformed"),
        "{msg}"
    );
    let one = write(&dir, "one.tsv", text(1).as_bytes());
    assert!(no_samples(&one, false).starts_with("only 1 valid sample"));
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nope.tsv");
    match open_err(options(&path)) {
        DataError::Io { path: p, .. } => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        open_err(options(dir.path())),
        DataError::Io { .. }
    ));
}

#[test]
fn options_are_validated() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "d.tsv", text(8).as_bytes());
    let invalid = |opts: CriteoOptions| match open_err(opts) {
        DataError::Invalid(message) => message,
        other => panic!("{other:?}"),
    };
    let mut opts = options(&path);
    opts.table_rows = vec![10; 3];
    let msg = invalid(opts);
    assert_eq!(
        msg,
        "`table_rows` needs 26 values for Criteo's C1..C26, got 3"
    );
    let mut opts = options(&path);
    opts.table_rows[4] = 1;
    assert!(invalid(opts).contains("C5 is 1"));
    for fraction in [0.0, 1.0, -0.5, 2.0, f64::NAN] {
        let mut opts = options(&path);
        opts.test_fraction = fraction;
        assert!(invalid(opts).contains("test_fraction"));
    }
    // Options are checked before the file is touched.
    let mut opts = options(&dir.path().join("nope.tsv"));
    opts.table_rows.pop();
    assert!(matches!(open_err(opts), DataError::Invalid(_)));
}

#[test]
fn bad_batch_sizes_are_invalid() {
    let dir = TempDir::new().unwrap();
    let ds = open(&write(&dir, "d.tsv", text(13).as_bytes()));
    let mut stream = ds.open_train().unwrap();
    let mut out = Batch::new(NUM_DENSE, NUM_SPARSE);
    match stream.next_batch(11, &mut out) {
        Err(DataError::Invalid(m)) => {
            assert!(m.contains("11") && m.contains("10 training samples"), "{m}");
            assert!(m.contains("--batch-size"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        stream.next_batch(0, &mut out),
        Err(DataError::Invalid(_))
    ));
    stream.next_batch(10, &mut out).unwrap();
    assert_eq!(out.len(), 10);
}

#[test]
fn file_changed_under_the_stream() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "d.tsv", text(13).as_bytes());
    let ds = open(&path);
    let mut out = Batch::new(NUM_DENSE, NUM_SPARSE);
    // A line that turns bad: the next epoch reports it.
    let mut stream = ds.open_train().unwrap();
    stream.next_batch(8, &mut out).unwrap();
    let content = format!("{}\n{}\n{}", line(0), line_with(1, 7, "?"), text(13));
    std::fs::write(&path, content).unwrap();
    let err = stream.next_batch(8, &mut out).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:2: field I7: ", path.display())),
        "{err}"
    );
    // A file that shrinks: an I/O error.
    std::fs::write(&path, text(3)).unwrap();
    let mut stream = ds.open_train().unwrap();
    match stream.next_batch(8, &mut out) {
        Err(DataError::Io { source, .. }) => {
            assert!(
                source.to_string().contains("ended after 3 of 10"),
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(ds.open_train().err(), Some(DataError::Io { .. })));
}

#[test]
fn dataset_accessors() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "d.tsv", text(13).as_bytes());
    let mut opts = options(&path);
    opts.table_rows = (0..NUM_SPARSE as u32).map(|c| 100 + c).collect();
    let ds = CriteoDataset::open(opts.clone()).unwrap();
    assert_eq!(ds.name(), path.display().to_string());
    assert_eq!(
        ds.schema(),
        &Schema {
            num_dense: NUM_DENSE,
            table_rows: opts.table_rows
        }
    );
    assert_eq!(ds.teacher_auc(), None);
    assert_eq!(ds.skipped_lines(), 0);
    assert!(ds.skipped_examples().is_empty());
    for (c, bags) in ds.test().sparse.iter().enumerate() {
        assert!(bags.indices.iter().all(|&r| r < 100 + c as u32));
    }
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CriteoDataset>();
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
