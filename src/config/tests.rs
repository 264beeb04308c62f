//! The config's parsing, defaults and range checks.
use super::*;

#[test]
fn defaults_are_valid() {
    RunConfig::default().validate().unwrap();
}

#[test]
fn batch_size_zero_names_the_key_and_flag() {
    let c = RunConfig {
        batch_size: 0,
        ..Default::default()
    };
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("batch_size (--batch-size)") && e.contains("from 1 to"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_reported_with_its_line() {
    let text = "seed = 3\n[model]\ndim = 8\nwidth = 4\n";
    let e = RunConfig::from_toml(text, Path::new("run.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("run.toml:4:"), "{e}");
    assert!(e.contains("width"), "{e}");
}

#[test]
fn toml_sets_nested_keys_and_keeps_defaults() {
    let text = "lr = 0.1\ntable_rows = [10, 20]\n[synthetic]\ntables = 2\n[model]\ndim = 8\n";
    let c = RunConfig::from_toml(text, Path::new("x.toml")).unwrap();
    assert_eq!(c.lr, 0.1);
    assert_eq!(c.model.dim, 8);
    assert_eq!(c.model.top_mlp, ModelConfig::default().top_mlp);
    assert_eq!(c.table_rows.per_table(2).unwrap(), vec![10, 20]);
    c.validate().unwrap();
}

#[test]
fn ranges_are_checked() {
    let bad = [
        RunConfig {
            lr: 0.0,
            ..Default::default()
        },
        RunConfig {
            lr: f32::NAN,
            ..Default::default()
        },
        RunConfig {
            test_fraction: 1.0,
            ..Default::default()
        },
        RunConfig {
            steps: Some(0),
            ..Default::default()
        },
        RunConfig {
            table_rows: TableRows::Each(vec![5; 3]),
            ..Default::default()
        },
        RunConfig {
            table_rows: TableRows::One(0),
            ..Default::default()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
    let e = RunConfig {
        test_fraction: 1.5,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        e.to_string().contains("test_fraction (--test-fraction)"),
        "{e}"
    );
}

#[test]
fn the_example_config_spells_out_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/default.toml");
    assert_eq!(RunConfig::from_file(&path).unwrap(), RunConfig::default());
}

#[test]
fn table_rows_parse() {
    assert_eq!(TableRows::parse("7").unwrap(), TableRows::One(7));
    assert_eq!(
        TableRows::parse("1,2, 3").unwrap(),
        TableRows::Each(vec![1, 2, 3])
    );
    assert!(TableRows::parse("1,x").is_err());
}

#[test]
fn threads_split_between_loader_and_cpu_kernels() {
    use crate::device::BackendKind;
    let cfg = RunConfig::default();
    let cpu = cfg.thread_split(BackendKind::Cpu, 2);
    assert_eq!((cpu.loader, cpu.compute), (2, Some(2)));
    let gpu = cfg.thread_split(BackendKind::Wgpu, 32);
    assert_eq!((gpu.loader, gpu.compute), (8, None));
    let set = RunConfig {
        loader_threads: Some(3),
        compute_threads: Some(1),
        ..RunConfig::default()
    };
    let cpu = set.thread_split(BackendKind::Cpu, 16);
    assert_eq!((cpu.loader, cpu.compute), (3, Some(1)));
    assert_eq!(set.thread_split(BackendKind::Cuda, 16).compute, None);
    assert_eq!(cfg.thread_split(BackendKind::Cpu, 0).compute, Some(1));
}
