//! The dataset: the test split, the training stream's epochs, options and batch sizes.

use super::*;

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
