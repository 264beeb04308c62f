//! One step's embedding exchange, as TorchRec's sequence sharding does it: ids to their rows'
//! owners (all-to-all), one vector per lookup back (all-to-all), one gradient per lookup to the
//! owner (the reverse all-to-all), which applies the optimizer; the gradients of replicated rows
//! summed over the ranks (all-reduce) and applied by every holder.
//!
//! Units travel in a fixed order — per peer, table by table, sample by sample — and an owner
//! takes its senders in rank order, so it sees every row's lookups in the global batch's order
//! and sums their gradients as a single process would. What a rank asks of its own shard is
//! served in place, never handed to the engine, at its rank's position in that order. Every
//! byte is counted per peer and phase ([`Traffic`]); a rank's bytes to itself cross no network.

use super::DistError;
use super::collective::{Collective, CollectiveExt};
use super::shard::{ShardStore, Units};
use super::traffic::{Phase, Traffic};
use crate::data::Bags;
use crate::device::Pooling;
use crate::device::cpu::bag_forward;
use crate::shard::{Router, Source};

/// What crossed one step: kept between the forward and the backward.
#[derive(Default)]
struct Step {
    /// Per destination rank: the (table, lookup) of each unit sent, in order.
    sent: Vec<Vec<(u32, u32)>>,
    /// Units received, in rank order: (table, global row, bag length).
    recv: Vec<[u32; 3]>,
    /// The local row of each unit received.
    recv_local: Vec<u32>,
}

/// The exchange of one rank: its router, its traffic counters and the step in flight.
pub struct Exchange<'c, C: Collective + ?Sized> {
    coll: &'c C,
    router: Router,
    table_rows: Vec<u32>,
    replicas: bool,
    traffic: Traffic,
    step: Step,
}

impl<'c, C: Collective + ?Sized> Exchange<'c, C> {
    /// The exchange over `coll` for a plan's `router`; `devices_per_host` maps ranks to tiers.
    pub fn new(coll: &'c C, router: Router, table_rows: &[u32], devices_per_host: usize) -> Self {
        let replicas = (0..table_rows.len()).any(|t| {
            (0..table_rows[t]).any(|r| router.route(t, r, 0).is_some_and(|(_, rep)| rep > 0))
        });
        Exchange {
            traffic: Traffic::new(coll.rank(), coll.size(), devices_per_host),
            coll,
            router,
            table_rows: table_rows.to_vec(),
            replicas,
            step: Step::default(),
        }
    }

    /// Bytes handed to the engine so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Puts back counters saved before exchanges that must not count (the evaluation's).
    pub fn restore_traffic(&mut self, saved: Traffic) {
        self.traffic = saved;
    }

    /// Counts bytes another part of the step (the dense all-reduce) handed to the engine.
    pub fn count(&mut self, phase: Phase, bytes: u64) {
        self.traffic.add_collective(phase, bytes);
    }

    /// The forward: sends every lookup of `sparse` (one [`Bags`] per table) to its row's owner
    /// and returns, per table, one vector per lookup in the lookups' order.
    pub fn forward(
        &mut self,
        store: &ShardStore,
        sparse: &[Bags],
    ) -> Result<Vec<Vec<f32>>, DistError> {
        let (me, n, dim) = (self.coll.rank(), self.coll.size(), store.dim());
        if sparse.len() != self.table_rows.len() {
            return Err(DistError::Config(format!(
                "a batch of {} tables for a plan of {}",
                sparse.len(),
                self.table_rows.len()
            )));
        }
        let mut sent: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
        let mut ids: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (t, bags) in sparse.iter().enumerate() {
            for b in 0..bags.len() {
                let (lo, hi) = (bags.offsets[b] as usize, bags.offsets[b + 1] as usize);
                for j in lo..hi {
                    let row = bags.indices[j];
                    if row >= self.table_rows[t] {
                        return Err(DistError::Config(format!(
                            "row {row} of table {t} is past its {} rows",
                            self.table_rows[t]
                        )));
                    }
                    let dest = match self.router.source(t, row, me) {
                        Some(Source::Device(d)) => d,
                        _ => me,
                    };
                    sent[dest].push((t as u32, j as u32));
                    ids[dest].extend([t as u32, row, (hi - lo) as u32]);
                }
            }
        }
        let mut counts: Vec<usize> = ids.iter().map(Vec::len).collect();
        for (p, c) in counts.iter().enumerate() {
            self.traffic.add(Phase::Ids, p, 4 * *c as u64);
        }
        // What this rank asks of itself never goes through the engine: it is served in place,
        // at its rank's position in the order received.
        let mine = std::mem::take(&mut ids[me]);
        counts[me] = 0;
        let flat: Vec<u32> = ids.concat();
        let (others, mut recv_counts) = self.coll.all_to_all_v(&flat, &counts)?;
        let split: usize = recv_counts[..me].iter().sum();
        recv_counts[me] = mine.len();
        let recv: Vec<[u32; 3]> = others[..split]
            .iter()
            .chain(&mine)
            .chain(&others[split..])
            .copied()
            .collect::<Vec<u32>>()
            .chunks_exact(3)
            .map(|u| [u[0], u[1], u[2]])
            .collect();
        let recv_counts: Vec<usize> = recv_counts.iter().map(|c| c / 3).collect();
        let mut out: Vec<Vec<f32>> = sparse
            .iter()
            .map(|b| vec![0f32; b.indices.len() * dim])
            .collect();
        // Serve the units received, in their order: others' into the reply, ours into `out`.
        let mut recv_local = Vec::with_capacity(recv.len());
        let mut values = Vec::with_capacity(recv.len() * dim);
        let mut at = 0;
        for (p, &c) in recv_counts.iter().enumerate() {
            for (k, &[t, row, _]) in recv[at..at + c].iter().enumerate() {
                let local = store.local(t as usize, row).ok_or_else(|| {
                    DistError::Config(format!(
                        "rank {me} was asked by rank {p} for row {row} of table {t}, which its \
                         plan does not give it: the ranks run different plans"
                    ))
                })?;
                recv_local.push(local);
                if p == me {
                    let (tt, j) = sent[me][k];
                    out[tt as usize][j as usize * dim..][..dim]
                        .copy_from_slice(store.row(t as usize, local));
                } else {
                    store.push_row(t as usize, local, &mut values);
                }
            }
            self.traffic.add(Phase::Forward, p, (4 * c * dim) as u64);
            at += c;
        }
        let mut back: Vec<usize> = recv_counts.iter().map(|c| c * dim).collect();
        back[me] = 0;
        let (got, _) = self.coll.all_to_all_v(&values, &back)?;
        let mut at = 0;
        for (_, list) in sent.iter().enumerate().filter(|&(p, _)| p != me) {
            for &(t, j) in list {
                out[t as usize][j as usize * dim..][..dim].copy_from_slice(&got[at..at + dim]);
                at += dim;
            }
        }
        self.step = Step {
            sent,
            recv,
            recv_local,
        };
        Ok(out)
    }

    /// The backward of the last [`Exchange::forward`]: `grad(t, j)` is the gradient of lookup
    /// `j` of table `t`; each goes to its row's owner, which updates the row at rate `lr`
    /// (`pooling` says how a lookup's bag scaled it); replicated rows are summed over ranks.
    pub fn backward<'g>(
        &mut self,
        store: &mut ShardStore,
        grad: impl Fn(usize, usize) -> &'g [f32],
        pooling: Pooling,
        lr: f32,
    ) -> Result<(), DistError> {
        let dim = store.dim();
        let step = std::mem::take(&mut self.step);
        let me = self.coll.rank();
        // Gradients of this rank's own units stay here, as in the forward.
        let (mut send, mut own) = (Vec::new(), Vec::new());
        let counts: Vec<usize> = step
            .sent
            .iter()
            .enumerate()
            .map(|(p, list)| {
                let to = if p == me { &mut own } else { &mut send };
                for &(t, j) in list {
                    to.extend_from_slice(grad(t as usize, j as usize));
                }
                self.traffic
                    .add(Phase::Backward, p, (4 * list.len() * dim) as u64);
                if p == me { 0 } else { list.len() * dim }
            })
            .collect();
        let (others, from) = self.coll.all_to_all_v(&send, &counts)?;
        debug_assert_eq!(others.len() + own.len(), step.recv.len() * dim);
        // Unit k's gradient: the others' before this rank's position, then our own, then theirs.
        let (own_at, own_units) = (from[..me].iter().sum::<usize>() / dim, own.len() / dim);
        let grad_of = |k: usize| -> &[f32] {
            match k.checked_sub(own_at) {
                None => &others[k * dim..][..dim],
                Some(i) if i < own_units => &own[i * dim..][..dim],
                Some(_) => &others[(k - own_units) * dim..][..dim],
            }
        };
        // Units per table, in the order received (rank order, then each sender's order).
        let mut by_table: Vec<Vec<usize>> = vec![Vec::new(); store.tables()];
        for (k, u) in step.recv.iter().enumerate() {
            by_table[u[0] as usize].push(k);
        }
        let mut replicated: Vec<(u32, u32, Vec<f32>)> = Vec::new();
        for (t, units_of_t) in by_table.iter().enumerate() {
            let (mut local, mut len, mut g) = (Vec::new(), Vec::new(), Vec::new());
            let (mut rep_local, mut rep_len, mut rep_g) = (Vec::new(), Vec::new(), Vec::new());
            for &k in units_of_t {
                let [_, row, l] = step.recv[k];
                let rep = self.router.route(t, row, me).is_some_and(|(_, r)| r > 0);
                let (lv, ln, gv) = match rep {
                    false => (&mut local, &mut len, &mut g),
                    true => (&mut rep_local, &mut rep_len, &mut rep_g),
                };
                lv.push(step.recv_local[k]);
                ln.push(l);
                gv.extend_from_slice(grad_of(k));
            }
            let units = Units {
                local: &local,
                len: &len,
                grads: &g,
            };
            store.apply_with(t, &units, lr, pooling)?;
            if !rep_local.is_empty() {
                let units = Units {
                    local: &rep_local,
                    len: &rep_len,
                    grads: &rep_g,
                };
                for (row, sum) in store.row_sums(t, &units, pooling)? {
                    replicated.push((t as u32, row, sum));
                }
            }
        }
        if self.replicas {
            self.sync_replicas(store, replicated, lr)?;
        }
        Ok(())
    }

    /// Sums the gradients of the replicated rows touched anywhere over all ranks and applies
    /// them on every holder: the touched rows' keys are gathered, then one all-reduce.
    fn sync_replicas(
        &mut self,
        store: &mut ShardStore,
        mine: Vec<(u32, u32, Vec<f32>)>,
        lr: f32,
    ) -> Result<(), DistError> {
        let (n, dim) = (self.coll.size(), store.dim());
        let keys: Vec<u32> = mine.iter().flat_map(|(t, r, _)| [*t, *r]).collect();
        let send: Vec<u32> = (0..n).flat_map(|_| keys.iter().copied()).collect();
        for p in 0..n {
            self.traffic.add(Phase::Sync, p, 4 * keys.len() as u64);
        }
        let (all, _) = self.coll.all_to_all_v(&send, &vec![keys.len(); n])?;
        let mut union: Vec<(u32, u32)> = all.chunks_exact(2).map(|k| (k[0], k[1])).collect();
        union.sort_unstable();
        union.dedup();
        let mut sums = vec![0f32; union.len() * dim];
        for (t, r, g) in &mine {
            let i = union.binary_search(&(*t, *r)).unwrap_or_default();
            sums[i * dim..][..dim].copy_from_slice(g);
        }
        self.traffic
            .add_collective(Phase::Sync, 4 * sums.len() as u64);
        self.coll.all_reduce_sum(&mut sums)?;
        for (i, &(t, r)) in union.iter().enumerate() {
            if let Some(local) = store.local(t as usize, r) {
                store.apply_sum(t as usize, local, &sums[i * dim..][..dim], lr)?;
            }
        }
        Ok(())
    }
}

/// Pools per-lookup vectors (`lookups × dim`, in `bags`' order) into `out`, bag `b` at
/// `b * stride + offset`, with the CPU backend's `bag_forward`: the sums a single process makes.
pub fn pool(
    vectors: &[f32],
    bags: &Bags,
    dim: usize,
    pooling: Pooling,
    out: &mut [f32],
    stride: usize,
    offset: usize,
) -> Result<(), DistError> {
    let identity: Vec<u32> = (0..bags.indices.len() as u32).collect();
    bag_forward(
        vectors,
        identity.len() as u32,
        dim,
        &identity,
        &bags.offsets,
        pooling,
        out,
        stride,
        offset,
    )
    .map_err(|e| DistError::Engine(format!("pooling received vectors: {e}")))
}
