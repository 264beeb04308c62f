//! The pipeline's host stages, each on its own thread: the planner (window, pins, victims), the
//! stager (gathers packed rows and uploads them to device staging) and the write-back (scatters
//! evicted rows into the host stores). The device stage is the caller's loop in [`super`].

use super::*;

/// The planner thread: keeps the window, plans each batch, releases rows as steps finish.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_stage(
    mut planner: Planner,
    window: usize,
    steps: u64,
    loaded: Receiver<Result<Prepared, DataError>>,
    done: Receiver<u64>,
    out: Sender<Result<Plan, TrainError>>,
    hooks: &TestHooks,
) {
    background();
    let mut queue: VecDeque<Prepared> = VecDeque::new();
    // `queue[..pinned]` are in the window (their rows pinned); the rest wait outside it.
    let (mut pinned, mut grow_one) = (0usize, false);
    let mut received = 0u64;
    // The unique rows of each planned, not yet trained batch (to unpin when it is done), and
    // spare vectors to reuse for them.
    let mut in_flight: VecDeque<Vec<Vec<u32>>> = VecDeque::new();
    let mut spare: Vec<Vec<Vec<u32>>> = Vec::new();
    let finish = |planner: &mut Planner,
                  in_flight: &mut VecDeque<Vec<Vec<u32>>>,
                  spare: &mut Vec<Vec<Vec<u32>>>| {
        if let Some(rows) = in_flight.pop_front() {
            planner.unpin_rows(&rows);
            spare.push(rows);
        }
    };
    for step in 1..=steps {
        let t_wait = Instant::now();
        let mut busy = 0.0;
        // Fill the window: the batch to plan and the W after it.
        while queue.len() <= window && received < steps {
            match loaded.recv() {
                Ok(Ok(p)) => {
                    let t0 = Instant::now();
                    if let Err(e) = planner.check(&p.maps) {
                        let _ = out.send(Err(TrainError::Device(e.into())));
                        return;
                    }
                    queue.push_back(p);
                    received += 1;
                    busy += t0.elapsed().as_secs_f64();
                }
                Ok(Err(e)) => {
                    let _ = out.send(Err(e.into()));
                    return;
                }
                Err(_) => return,
            }
        }
        // Let batches into the window (pin their rows): all of them, or after a plan that had
        // to leave some out, one more per step — pinning a window that does not fit only for
        // the next plan to unpin it again would cost two passes over each left-out batch.
        let t0 = Instant::now();
        let target = if grow_one {
            (pinned + 1).min(queue.len())
        } else {
            queue.len()
        };
        while pinned < target {
            planner.pin(&queue[pinned].maps);
            pinned += 1;
        }
        busy += t0.elapsed().as_secs_f64();
        hooks.delay(1, step);
        let Some(batch) = queue.pop_front() else {
            return;
        };
        // The batch to plan was pinned above (the target is at least one batch).
        pinned -= 1;
        let plan = loop {
            // Steps that finished since: their rows unpin.
            while done.try_recv().is_ok() {
                finish(&mut planner, &mut in_flight, &mut spare);
            }
            let t0 = Instant::now();
            let far: Vec<&[RowMap]> = queue
                .iter()
                .take(pinned)
                .map(|p| p.maps.as_slice())
                .collect();
            let attempt = planner.plan(step, &batch.maps, &far, !in_flight.is_empty());
            busy += t0.elapsed().as_secs_f64();
            match attempt {
                Ok(Attempt::Done(tables, left_out, depends_on)) => {
                    pinned -= left_out;
                    grow_one = left_out > 0;
                    // Planned with a shorter window than the batches at hand: counted.
                    break (tables, pinned < queue.len(), depends_on);
                }
                Ok(Attempt::Wait) => match done.recv() {
                    Ok(_) => finish(&mut planner, &mut in_flight, &mut spare),
                    Err(_) => return,
                },
                Err(e) => {
                    let _ = out.send(Err(TrainError::Device(e.into())));
                    return;
                }
            }
        };
        let mut rows = spare.pop().unwrap_or_default();
        rows.resize_with(batch.maps.len(), Vec::new);
        for (r, m) in rows.iter_mut().zip(&batch.maps) {
            r.clear();
            r.extend_from_slice(&m.unique_rows);
        }
        in_flight.push_back(rows);
        let waiting = (t_wait.elapsed().as_secs_f64() - busy).max(0.0);
        let (tables, shrunk, depends_on) = plan;
        let plan = Plan {
            step,
            prepared: batch,
            tables,
            depends_on,
            shrunk,
            planner: StageTime {
                stage: "planner".into(),
                busy_s: busy,
                waiting_s: waiting,
            },
        };
        if out.send(Ok(plan)).is_err() {
            return;
        }
    }
}

/// The stager thread: waits for the write-backs a plan depends on, gathers the packed rows of
/// its fetches, uploads them to a device staging set and renames the batch to cache slots.
#[allow(clippy::too_many_arguments)]
pub(super) fn stage_stage<D: Device>(
    dev: &D,
    plans: Receiver<Result<Plan, TrainError>>,
    sets: Receiver<Vec<DeviceRows<D>>>,
    out: Sender<Result<Staged<D>, TrainError>>,
    stores: &[Arc<Mutex<HostStore>>],
    progress: &Progress,
    upload_bytes: &UploadBytes,
    hooks: &TestHooks,
    link: Link,
) {
    background();
    loop {
        let t_wait = Instant::now();
        let plan = match plans.recv() {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = out.send(Err(e));
                return;
            }
            Err(_) => return,
        };
        let mut waiting = t_wait.elapsed().as_secs_f64();
        let t_dep = Instant::now();
        if !progress.wait_for(plan.depends_on) {
            return;
        }
        waiting += t_dep.elapsed().as_secs_f64();
        let t_busy = Instant::now();
        hooks.delay(2, plan.step);
        let mut tables = Vec::with_capacity(plan.tables.len());
        let mut bytes = 0u64;
        for (t, p) in plan.tables.into_iter().enumerate() {
            let (mut rows, mut slots) = (p.fetch_rows.clone(), p.fetch_slots.clone());
            if hooks.drop_prefetch == Some((plan.step, t)) && !rows.is_empty() {
                rows.remove(0);
                slots.remove(0);
            }
            let (mut packed, mut state) = (Vec::new(), Vec::new());
            lock_store(&stores[t]).gather(&rows, &mut packed, &mut state);
            bytes += 4 * (packed.len() + state.len() + slots.len()) as u64;
            let map = &plan.prepared.maps[t];
            let mut indices = Vec::new();
            map.rename_lookups(&p.slot_of, &mut indices);
            let mut renamed = RowMap::new();
            map.rename_into(&p.slot_of, &mut renamed);
            tables.push(StagedTable {
                plan: p,
                rows,
                slots,
                packed,
                state,
                indices,
                map: renamed,
            });
        }
        // Uploads happen here, ahead of the device: on a GPU they run on its copy engine while
        // the device stage trains an earlier batch; the modelled link is this stage's time.
        let t_set = Instant::now();
        let Ok(mut uploads) = sets.recv() else {
            return;
        };
        let set_wait = t_set.elapsed().as_secs_f64();
        waiting += set_wait;
        if let Err(e) = upload::upload_set(dev, &mut uploads, &tables, upload_bytes) {
            let _ = out.send(Err(e.into()));
            return;
        }
        link.charge(bytes);
        let staged = Staged {
            step: plan.step,
            prepared: plan.prepared,
            tables,
            uploads,
            depends_on: plan.depends_on,
            shrunk: plan.shrunk,
            planner: plan.planner,
            stager: StageTime {
                stage: "stager".into(),
                busy_s: (t_busy.elapsed().as_secs_f64() - set_wait).max(0.0),
                waiting_s: waiting,
            },
        };
        if out.send(Ok(staged)).is_err() {
            return;
        }
    }
}

/// The write-back thread: downloads each step's victims (packed on the device by the step) and
/// scatters them into the host stores, in step order. A failed download is recorded in `error`
/// and stops the run.
#[allow(clippy::too_many_arguments)]
pub(super) fn writeback_stage<D: Device>(
    dev: &D,
    error: &Mutex<Option<crate::device::DeviceError>>,
    evicted: Receiver<(u64, Evicted<D>)>,
    recycle: Sender<Evicted<D>>,
    stores: &[Arc<Mutex<HostStore>>],
    progress: &Progress,
    time: &Mutex<StageTime>,
    hooks: &TestHooks,
    link: Link,
) {
    background();
    loop {
        let t_wait = Instant::now();
        let Ok((step, mut rows)) = evicted.recv() else {
            return;
        };
        let waiting_s = t_wait.elapsed().as_secs_f64();
        let t_busy = Instant::now();
        hooks.delay(4, step);
        // Downloads of victims happen off the device's path: the link time is this stage's.
        link.charge(rows.bytes());
        if let Err(e) = download_victims(dev, &mut rows) {
            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            progress.abort();
            return;
        }
        for (t, (ids, words, state)) in rows.tables.iter().enumerate() {
            if !ids.is_empty() {
                lock_store(&stores[t]).scatter(ids, words, state);
            }
        }
        progress.advance(step);
        let _ = recycle.send(rows);
        *time.lock().unwrap_or_else(|e| e.into_inner()) = StageTime {
            stage: "writeback".into(),
            busy_s: t_busy.elapsed().as_secs_f64(),
            waiting_s,
        };
    }
}

/// Fills each table's host buffers of `rows` from the device buffers its step quantized into.
fn download_victims<D: Device>(
    dev: &D,
    rows: &mut Evicted<D>,
) -> Result<(), crate::device::DeviceError> {
    for ((ids, words, state), device) in rows.tables.iter_mut().zip(&rows.device) {
        if ids.is_empty() {
            continue;
        }
        dev.download(
            device.packed.buffer(),
            0,
            bytemuck::cast_slice_mut(words.as_mut_slice()),
        )?;
        if !state.is_empty() {
            dev.download(
                device.state.buffer(),
                0,
                bytemuck::cast_slice_mut(state.as_mut_slice()),
            )?;
        }
    }
    Ok(())
}
