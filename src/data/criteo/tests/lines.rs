//! Reading files: LF and CRLF, gzip, blank and overlong lines, and the `PATH:LINE: field NAME:`
//! errors of malformed ones (or their skipping).

use super::*;
use crate::data::criteo::lines::MAX_LINE;

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
fn malformed_lines_name_the_line_and_field() {
    let dir = TempDir::new().unwrap();
    let long = "a".repeat(60);
    let long_message = format!("expected 1 to 16 hex digits, found {:?}...", &long[..40]);
    // One bad field in an otherwise valid line: (field index, its name, value, message).
    let bad_fields = [
        (0, "label", "2", r#"expected 0 or 1, found "2""#),
        (0, "label", "", r#"expected 0 or 1, found """#),
        (0, "label", "1.0", r#"expected 0 or 1, found "1.0""#),
        (3, "I3", "4.5", r#"expected an integer, found "4.5""#),
        (13, "I13", "-", r#"expected an integer, found "-""#),
        (1, "I1", " 5", r#"expected an integer, found " 5""#),
        (
            2,
            "I2",
            "99999999999999999999",
            r#"expected an integer that fits in 64 bits, found "99999999999999999999""#,
        ),
        (
            18,
            "C5",
            "zz12",
            r#"expected 1 to 16 hex digits, found "zz12""#,
        ),
        (
            39,
            "C26",
            "0123456789abcdef0",
            r#"expected 1 to 16 hex digits, found "0123456789abcdef0""#,
        ),
        (14, "C1", long.as_str(), long_message.as_str()),
        (
            20,
            "C7",
            "ab\u{e9}",
            r#"expected 1 to 16 hex digits, found "abé""#,
        ),
    ];
    let mut cases: Vec<(String, Option<&str>, String)> = bad_fields
        .iter()
        .map(|&(i, name, value, message)| (line_with(0, i, value), Some(name), message.into()))
        .collect();
    // Whole-line errors.
    cases.push((
        fields(0)[1..].join("\t"),
        None,
        "expected 40 tab-separated fields (label, I1..I13, C1..C26), found 39".into(),
    ));
    cases.push((
        line(0) + "\t",
        None,
        "expected 40 tab-separated fields (label, I1..I13, C1..C26), found 41".into(),
    ));
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
