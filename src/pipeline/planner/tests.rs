//! The planner's rules on hand-made batches.
use super::*;

fn maps(rows: &[&[u32]]) -> Vec<RowMap> {
    rows.iter()
        .map(|r| {
            let mut b = Bags::new();
            b.push(r);
            RowMap::from_bags(&b)
        })
        .collect()
}

/// Three one-table batches of the given rows, all pinned (in the window) in `p`.
fn pinned(p: &mut Planner, rows: [&[u32]; 3]) -> [Vec<RowMap>; 3] {
    let batches = rows.map(|r| maps(&[r]));
    batches.iter().for_each(|b| p.pin(b));
    batches
}

fn done(a: Attempt) -> (Vec<SlotPlan>, usize, u64) {
    match a {
        Attempt::Done(p, s, d) => (p, s, d),
        Attempt::Wait => panic!("expected a plan"),
    }
}

#[test]
fn pinned_rows_are_hits_and_never_victims() {
    let mut p = Planner::new(&[100], &[3]);
    let [b1, b2, b3] = pinned(&mut p, [&[1, 2], &[2, 3], &[4]]);
    let (p1, ..) = done(p.plan(1, &b1, &[&b2, &b3], false).unwrap());
    assert_eq!(p1[0].fetch.rows, vec![1, 2]);
    let (p2, ..) = done(p.plan(2, &b2, &[&b3], true).unwrap());
    assert_eq!(
        p2[0].fetch.rows,
        vec![3],
        "row 2 is a hit: it is resident for batch 1"
    );
    // Batch 3 needs a slot: rows 1..3 are all pinned (in flight) until batch 1 finishes.
    assert!(matches!(p.plan(3, &b3, &[], true).unwrap(), Attempt::Wait));
    p.unpin(&b1); // batch 1 trained: row 1 is free to go, row 2 is still pinned by batch 2
    let (p3, ..) = done(p.plan(3, &b3, &[], true).unwrap());
    assert_eq!(
        (p3[0].evict.rows.clone(), p3[0].fetch.rows.clone()),
        (vec![1], vec![4])
    );
}

#[test]
fn a_full_window_is_shortened_farthest_first_and_counted() {
    let mut p = Planner::new(&[100], &[2]);
    let [b1, b2, b3] = pinned(&mut p, [&[1], &[2], &[3, 4]]);
    let (_, shrunk, _) = done(p.plan(1, &b1, &[&b2, &b3], false).unwrap());
    assert_eq!(shrunk, 0);
    p.unpin(&b1);
    let (plan, shrunk, _) = done(p.plan(2, &b2, &[&b3], false).unwrap());
    assert!(shrunk == 0 && plan[0].fetch.rows == vec![2]);
    p.unpin(&b2);
    let (plan, _, _) = done(p.plan(3, &b3, &[], false).unwrap());
    assert_eq!(plan[0].evict.rows.len(), 2);
}

#[test]
fn a_window_that_does_not_fit_leaves_its_farthest_batch_out() {
    let mut p = Planner::new(&[100], &[2]);
    let [b1, b2, b3] = pinned(&mut p, [&[1, 2], &[3, 4], &[1]]);
    let (_, shrunk, _) = done(p.plan(1, &b1, &[&b2, &b3], false).unwrap());
    assert_eq!(shrunk, 0);
    p.unpin(&b1); // row 1 stays pinned by batch 3
    let (plan, shrunk, _) = done(p.plan(2, &b2, &[&b3], false).unwrap());
    assert_eq!(shrunk, 1, "batch 3 had to leave the window");
    let mut evicted = plan[0].evict.rows.clone();
    evicted.sort();
    assert_eq!(evicted, vec![1, 2]);
    p.unpin(&b2);
    p.pin(&b3); // back in the window, to be planned
    let (plan, _, dep) = done(p.plan(3, &b3, &[], false).unwrap());
    assert_eq!((plan[0].fetch.rows.clone(), dep), (vec![1], 2));
}

#[test]
fn a_batch_bigger_than_the_cache_names_the_minimum() {
    let mut p = Planner::new(&[100], &[2]);
    let b = maps(&[&[1, 2, 3]]);
    p.pin(&b);
    match p.plan(1, &b, &[], false) {
        Err(EmbeddingError::CacheTooSmall {
            table: 0,
            needed: 3,
            slots: 2,
        }) => {}
        _ => panic!("expected the minimum-size error"),
    }
}

#[test]
fn refetching_an_evicted_row_waits_for_its_write_back() {
    let mut p = Planner::new(&[100], &[1]);
    let (b1, b2, b3) = (maps(&[&[7]]), maps(&[&[8]]), maps(&[&[7]]));
    p.pin(&b1);
    let _ = done(p.plan(1, &b1, &[], false).unwrap());
    p.unpin(&b1);
    p.pin(&b2);
    let (plan, _, dep) = done(p.plan(2, &b2, &[], false).unwrap());
    assert_eq!((plan[0].evict.rows.clone(), dep), (vec![7], 0));
    p.unpin(&b2);
    p.pin(&b3);
    let (_, _, dep) = done(p.plan(3, &b3, &[], false).unwrap());
    assert_eq!(dep, 2, "row 7 was evicted by the plan of step 2");
}
