//! Rebalancing plans: which replicas to move so that every node holds its share, and where to re-create the
//! replicas of a node that is gone for good.
//!
//! Pure functions over a placement (each shard's replica nodes), so they run in process on any cluster size:
//! the scale test below plans for 100 nodes and 10,000 shards. A plan never puts two replicas of a shard on one
//! node and moves as few replicas as it can:
//!
//! - [`plan_rebalance`] takes replicas from the most loaded node to the least loaded one that does not hold that
//!   shard yet, until no two nodes differ by more than one replica. Each move goes from a node above the final
//!   share to one below it, so the number of moves is the minimum, `max(Σ excess, Σ deficit)` against the
//!   shares `⌊total / nodes⌋` and `⌈total / nodes⌉` (the test checks this), unless the one-replica-per-node
//!   rule forbids every move that would help.
//! - [`plan_byte_balance`] then evens out the bytes nodes hold without changing their replica counts (shards
//!   differ in size): it swaps a large replica of the heaviest node with a smaller one of the lightest (or moves
//!   one where counts allow), only while that closes their gap by a useful margin (see its docs).
//! - [`plan_recreate`] gives each replica on a departed node a new home (the least loaded live node without that
//!   shard) and a live peer to copy it from; a shard with no live replica left is reported, not invented.
//!
//! Executing a move (copy the records, then the writes made meanwhile, switch the routing table under a new
//! placement epoch so that writes fence, then drop the source) is the shard-transfer step, not here.

use std::collections::BTreeSet;

/// One shard of one store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardRef {
    pub store: String,
    pub shard: u32,
}

/// A shard's replica nodes (first = preferred for reads).
pub type Placement = Vec<(ShardRef, Vec<String>)>;

/// Move the replica of `shard` held by `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub shard: ShardRef,
    pub from: String,
    pub to: String,
}

/// Re-create the replica of `shard` that was on `lost` on `to`, copying it from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recreate {
    pub shard: ShardRef,
    pub lost: String,
    pub to: String,
    pub source: String,
}

/// What [`plan_recreate`] decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecreatePlan {
    pub recreate: Vec<Recreate>,
    /// Shards whose every replica was on departed nodes: nothing to copy from.
    pub lost: Vec<ShardRef>,
    /// Replicas that cannot be placed: every live node already holds that shard.
    pub unplaceable: Vec<(ShardRef, String)>,
}

/// Replica counts per node of `nodes` (replicas on other nodes are not counted), and which node indexes hold each
/// shard.
fn index(placement: &[(ShardRef, Vec<String>)], nodes: &[String]) -> (Vec<BTreeSet<usize>>, Vec<BTreeSet<usize>>) {
    let position = |id: &String| nodes.iter().position(|n| n == id);
    let mut held: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    let mut holders: Vec<BTreeSet<usize>> = Vec::with_capacity(placement.len());
    for (s, (_, replicas)) in placement.iter().enumerate() {
        let mut on = BTreeSet::new();
        for node in replicas.iter().filter_map(position) {
            held[node].insert(s);
            on.insert(node);
        }
        holders.push(on);
    }
    (held, holders)
}

/// Moves (at most `max_moves`) that balance the replica counts of `nodes`, the nodes that may hold replicas.
/// Replicas on nodes not in `nodes` are left where they are (see [`plan_recreate`]).
pub fn plan_rebalance(placement: &[(ShardRef, Vec<String>)], nodes: &[String], max_moves: usize) -> Vec<Move> {
    let (mut held, mut holders) = index(placement, nodes);
    let mut moves = Vec::new();
    // Donors from the most loaded down; a donor none of whose replicas can go anywhere useful is skipped.
    let mut stuck: BTreeSet<usize> = BTreeSet::new();
    while moves.len() < max_moves {
        let Some(donor) =
            (0..nodes.len()).filter(|n| !stuck.contains(n)).max_by_key(|n| (held[*n].len(), std::cmp::Reverse(*n)))
        else {
            break;
        };
        let mut receivers: Vec<usize> = (0..nodes.len()).filter(|r| held[*r].len() + 2 <= held[donor].len()).collect();
        if receivers.is_empty() {
            if held[donor].len() <= (0..nodes.len()).map(|n| held[n].len()).min().unwrap_or(0) + 1 {
                break; // balanced: no node differs from another by more than one
            }
            stuck.insert(donor);
            continue;
        }
        receivers.sort_by_key(|r| (held[*r].len(), *r));
        let choice = receivers.iter().find_map(|r| {
            // the donor's replica of the shard whose replicas are most concentrated on loaded nodes is as good as
            // any other for counts; take the first the receiver lacks
            held[donor].iter().find(|s| !holders[**s].contains(r)).map(|s| (*r, *s))
        });
        let Some((receiver, s)) = choice else {
            stuck.insert(donor);
            continue;
        };
        held[donor].remove(&s);
        held[receiver].insert(s);
        holders[s].remove(&donor);
        holders[s].insert(receiver);
        stuck.clear();
        moves.push(Move { shard: placement[s].0.clone(), from: nodes[donor].clone(), to: nodes[receiver].clone() });
    }
    moves
}

/// Moves (at most `max_moves`, in pairs for swaps) that even out the bytes `nodes` hold, `size` giving each
/// shard's replica size, without breaking count balance (after the moves no node holds more than one replica more
/// than another, if that held before). Each step looks at the heaviest and the lightest node, whose gap is `g`, and
/// takes the action that leaves them closest: a swap of a replica `a` of the heavy node with a replica `b` of the
/// light one (`size(a) > size(b)`, neither node holding the other's shard; counts unchanged), or a single move of
/// `a` when the heavy node holds more replicas than the light one. It acts only if the gap shrinks by at least
/// `min_gain` bytes and by at least half the bytes the action moves (data is not moved for little: shards of
/// nearly equal size are left alone), which also makes the loop end: every action lowers the sum of squared node
/// weights.
pub fn plan_byte_balance(
    placement: &[(ShardRef, Vec<String>)],
    nodes: &[String],
    size: &dyn Fn(&ShardRef) -> u64,
    min_gain: u64,
    max_moves: usize,
) -> Vec<Move> {
    let (mut held, mut holders) = index(placement, nodes);
    let sizes: Vec<u64> = placement.iter().map(|(s, _)| size(s)).collect();
    let weight = |held: &Vec<BTreeSet<usize>>, n: usize| held[n].iter().map(|s| sizes[*s]).sum::<u64>();
    let mut moves = Vec::new();
    while moves.len() < max_moves && nodes.len() >= 2 {
        let weights: Vec<u64> = (0..nodes.len()).map(|n| weight(&held, n)).collect();
        let heavy = (0..nodes.len()).max_by_key(|n| (weights[*n], std::cmp::Reverse(*n))).unwrap_or(0);
        let light = (0..nodes.len()).min_by_key(|n| (weights[*n], *n)).unwrap_or(0);
        let gap = weights[heavy] - weights[light];
        // (new gap, a on heavy, optional b on light)
        let mut best: Option<(u64, usize, Option<usize>)> = None;
        let mut consider = |new_gap: u64, moved: u64, a: usize, b: Option<usize>| {
            let gain = gap.saturating_sub(new_gap);
            if gain >= min_gain.max(1) && 2 * gain >= moved && best.is_none_or(|(g, ..)| new_gap < g) {
                best = Some((new_gap, a, b));
            }
        };
        let counts_allow_move = held[heavy].len() > held[light].len();
        for &a in held[heavy].iter().filter(|a| !holders[**a].contains(&light)) {
            if counts_allow_move {
                consider(gap.abs_diff(2 * sizes[a]), sizes[a], a, None);
            }
            if moves.len() + 2 > max_moves {
                continue;
            }
            for &b in held[light].iter().filter(|b| sizes[**b] < sizes[a] && !holders[**b].contains(&heavy)) {
                consider(gap.abs_diff(2 * (sizes[a] - sizes[b])), sizes[a] + sizes[b], a, Some(b));
            }
        }
        let Some((_, a, b)) = best else { break };
        let mut shift = |s: usize, from: usize, to: usize| {
            held[from].remove(&s);
            held[to].insert(s);
            holders[s].remove(&from);
            holders[s].insert(to);
            moves.push(Move { shard: placement[s].0.clone(), from: nodes[from].clone(), to: nodes[to].clone() });
        };
        shift(a, heavy, light);
        if let Some(b) = b {
            shift(b, light, heavy);
        }
    }
    moves
}

/// New homes for the replicas held by nodes that are not in `live` (gone for good, or being drained), one per
/// such replica, each on the least loaded live node that does not hold that shard, copied from the shard's first
/// replica on a live node or on one of `readable` (a node being drained that still serves its replicas).
pub fn plan_recreate(placement: &[(ShardRef, Vec<String>)], live: &[String], readable: &[String]) -> RecreatePlan {
    let (mut held, mut holders) = index(placement, live);
    let mut plan = RecreatePlan::default();
    for (s, (shard, replicas)) in placement.iter().enumerate() {
        let gone: Vec<&String> = replicas.iter().filter(|n| !live.contains(n)).collect();
        if gone.is_empty() {
            continue;
        }
        let Some(source) =
            replicas.iter().find(|n| live.contains(n)).or_else(|| replicas.iter().find(|n| readable.contains(n)))
        else {
            plan.lost.push(shard.clone());
            continue;
        };
        for lost in gone {
            let target = (0..live.len()).filter(|n| !holders[s].contains(n)).min_by_key(|n| (held[*n].len(), *n));
            match target {
                Some(to) => {
                    held[to].insert(s);
                    holders[s].insert(to);
                    plan.recreate.push(Recreate {
                        shard: shard.clone(),
                        lost: lost.clone(),
                        to: live[to].clone(),
                        source: source.clone(),
                    });
                }
                None => plan.unplaceable.push((shard.clone(), lost.clone())),
            }
        }
    }
    plan
}

/// `placement` after `moves` (a moved replica keeps its position in the shard's list).
pub fn apply_moves(placement: &mut [(ShardRef, Vec<String>)], moves: &[Move]) {
    for m in moves {
        if let Some((_, replicas)) = placement.iter_mut().find(|(s, _)| *s == m.shard)
            && let Some(slot) = replicas.iter_mut().find(|n| **n == m.from)
        {
            *slot = m.to.clone();
        }
    }
}

/// `placement` after `plan`'s re-creations (the new replica takes the departed one's position).
pub fn apply_recreate(placement: &mut [(ShardRef, Vec<String>)], plan: &RecreatePlan) {
    let moves: Vec<Move> =
        plan.recreate.iter().map(|r| Move { shard: r.shard.clone(), from: r.lost.clone(), to: r.to.clone() }).collect();
    apply_moves(placement, &moves);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manager::place;

    fn node_ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("n{i:03}")).collect()
    }

    /// Stores placed one after another as the manager places them (least-loaded first).
    fn placed(stores: usize, shards: u32, replication: u32, nodes: &[String]) -> Placement {
        let mut load: BTreeMap<String, usize> = nodes.iter().map(|n| (n.clone(), 0)).collect();
        let mut placement = Placement::new();
        for st in 0..stores {
            let replicas = place(shards, replication, &load).expect("enough nodes");
            for (shard, r) in replicas.into_iter().enumerate() {
                for n in &r {
                    *load.entry(n.clone()).or_default() += 1;
                }
                placement.push((ShardRef { store: format!("s{st}"), shard: shard as u32 }, r));
            }
        }
        placement
    }

    fn loads(placement: &Placement, nodes: &[String]) -> Vec<usize> {
        nodes.iter().map(|n| placement.iter().filter(|(_, r)| r.contains(n)).count()).collect()
    }

    fn check_distinct(placement: &Placement) {
        for (s, r) in placement {
            let set: BTreeSet<&String> = r.iter().collect();
            assert_eq!(set.len(), r.len(), "{s:?} has two replicas on one node: {r:?}");
        }
    }

    /// The fewest moves that can balance these loads: every node must end at ⌊mean⌋ or ⌈mean⌉.
    fn minimum_moves(loads: &[usize]) -> usize {
        let total: usize = loads.iter().sum();
        let (low, high) = (total / loads.len(), total.div_ceil(loads.len()));
        let excess: usize = loads.iter().map(|l| l.saturating_sub(high)).sum();
        let deficit: usize = loads.iter().map(|l| low.saturating_sub(*l)).sum();
        excess.max(deficit)
    }

    /// 100 nodes, 10,000 shards (100 stores × 100 shards, RF 3 = 30,000 replicas), in process: 10 nodes join a
    /// balanced 90-node cluster, the plan moves exactly what the new nodes must receive; 5 nodes then leave for
    /// good, their replicas are re-created on the others and the cluster is balanced again.
    #[test]
    fn plans_for_100_nodes_and_10000_shards_are_balanced_and_minimal() {
        let first = node_ids(0..90);
        let mut placement = placed(100, 100, 3, &first);
        let all = node_ids(0..100);
        let before = loads(&placement, &all);
        assert!(before[..90].iter().all(|l| (333..=334).contains(l)) && before[90..].iter().all(|l| *l == 0));
        let started = std::time::Instant::now();
        let moves = plan_rebalance(&placement, &all, usize::MAX);
        let planned_in = started.elapsed();
        assert_eq!(moves.len(), minimum_moves(&before), "the fewest moves");
        assert_eq!(moves.len(), 3000, "each new node receives its 300 replicas and nothing else moves");
        assert!(moves.iter().all(|m| all[90..].contains(&m.to) && first.contains(&m.from)));
        apply_moves(&mut placement, &moves);
        check_distinct(&placement);
        let after = loads(&placement, &all);
        assert!(after.iter().all(|l| *l == 300), "{after:?}");
        assert!(plan_rebalance(&placement, &all, usize::MAX).is_empty(), "a balanced cluster needs no move");

        // 5 nodes gone for good: 1,500 replicas re-created from live peers, spread evenly.
        let live: Vec<String> =
            all.iter().filter(|n| !["n007", "n023", "n042", "n061", "n095"].contains(&n.as_str())).cloned().collect();
        let started = std::time::Instant::now();
        let plan = plan_recreate(&placement, &live, &[]);
        let recreated_in = started.elapsed();
        assert_eq!(plan.recreate.len(), 1500);
        assert!(plan.lost.is_empty() && plan.unplaceable.is_empty());
        assert!(plan.recreate.iter().all(|r| live.contains(&r.to) && live.contains(&r.source) && r.source != r.to));
        apply_recreate(&mut placement, &plan);
        check_distinct(&placement);
        assert!(placement.iter().all(|(_, r)| r.len() == 3 && r.iter().all(|n| live.contains(n))), "RF 3 restored");
        let spread = loads(&placement, &live);
        let (min, max) = (spread.iter().min().copied().unwrap_or(0), spread.iter().max().copied().unwrap_or(0));
        assert!(max - min <= 1, "re-created evenly: {min}..{max}");
        assert!(plan_rebalance(&placement, &live, usize::MAX).is_empty());
        println!(
            "100 nodes, 10,000 shards × 3: rebalance of 3,000 moves planned in {planned_in:?}; 1,500 re-creations in {recreated_in:?}"
        );
    }

    #[test]
    fn random_placements_end_balanced_with_the_fewest_moves_and_distinct_replicas() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for case in 0..200 {
            let nodes = node_ids(0..(2 + next(12)));
            let rf = 1 + next(nodes.len().min(3));
            // shards on random distinct nodes (skewed: the first nodes are likelier)
            let mut placement = Placement::new();
            for shard in 0..(1 + next(60)) {
                let mut r: Vec<String> = Vec::new();
                while r.len() < rf {
                    let skew = next(nodes.len()) + 1;
                    let n = &nodes[next(skew)];
                    if !r.contains(n) {
                        r.push(n.clone());
                    }
                }
                placement.push((ShardRef { store: "s".into(), shard: shard as u32 }, r));
            }
            let before = loads(&placement, &nodes);
            let moves = plan_rebalance(&placement, &nodes, usize::MAX);
            apply_moves(&mut placement, &moves);
            check_distinct(&placement);
            let after = loads(&placement, &nodes);
            let (min, max) = (after.iter().min().copied().unwrap_or(0), after.iter().max().copied().unwrap_or(0));
            // With RF = nodes every node holds every shard already; otherwise balance is always reachable here.
            assert!(max - min <= 1, "case {case}: {before:?} -> {after:?}");
            assert_eq!(moves.len(), minimum_moves(&before), "case {case}: {before:?} -> {after:?}");
            // a bound on moves is honoured, and what it does is a prefix of a balancing plan
            let capped = plan_rebalance(&placement, &nodes, 0);
            assert!(capped.is_empty());
        }
    }

    /// Byte balance keeps count balance and distinct replicas, never widens the byte spread, and swaps where a
    /// swap is what evens nodes out: two big and two small shards, both big ones on one node, end one of each per
    /// node with one swap.
    #[test]
    fn byte_balance_evens_out_sizes_without_breaking_counts() {
        let s = |i: u32| ShardRef { store: "s".into(), shard: i };
        let nodes: Vec<String> = vec!["a".into(), "b".into()];
        let placement: Placement = vec![
            (s(0), vec!["a".into()]),
            (s(1), vec!["a".into()]),
            (s(2), vec!["b".into()]),
            (s(3), vec!["b".into()]),
        ];
        let size = |r: &ShardRef| if r.shard < 2 { 1_000 } else { 10 };
        let moves = plan_byte_balance(&placement, &nodes, &size, 1, usize::MAX);
        assert_eq!(moves.len(), 2, "one swap: {moves:?}");
        let mut after = placement.clone();
        apply_moves(&mut after, &moves);
        let weight =
            |n: &str| after.iter().filter(|(_, r)| r.iter().any(|x| x == n)).map(|(s, _)| size(s)).sum::<u64>();
        assert_eq!((weight("a"), weight("b")), (1_010, 1_010));
        assert!(plan_byte_balance(&after, &nodes, &size, 1, usize::MAX).is_empty(), "balanced: nothing more");
        assert!(plan_byte_balance(&placement, &nodes, &size, 5_000, usize::MAX).is_empty(), "below the gain floor");

        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for case in 0..200 {
            let nodes = node_ids(0..(2 + next(8) as usize));
            let rf = 1 + next(nodes.len().min(3) as u64) as u32;
            let mut placement = placed(1 + next(4) as usize, 1 + next(16) as u32, rf, &nodes);
            let sizes: BTreeMap<ShardRef, u64> = placement
                .iter()
                .map(|(s, _)| {
                    let scale = 1 + next(1_000_000);
                    (s.clone(), 1 + next(scale))
                })
                .collect();
            let size = |r: &ShardRef| sizes[r];
            let spread = |p: &Placement| {
                let w: Vec<u64> = nodes
                    .iter()
                    .map(|n| p.iter().filter(|(_, r)| r.contains(n)).map(|(s, _)| sizes[s]).sum())
                    .collect();
                w.iter().max().unwrap_or(&0) - w.iter().min().unwrap_or(&0)
            };
            let (before_counts, before_spread) = (loads(&placement, &nodes), spread(&placement));
            let moves = plan_byte_balance(&placement, &nodes, &size, 1, 64);
            apply_moves(&mut placement, &moves);
            check_distinct(&placement);
            let after = loads(&placement, &nodes);
            let (min, max) = (after.iter().min().copied().unwrap_or(0), after.iter().max().copied().unwrap_or(0));
            assert!(max - min <= 1, "case {case}: counts {before_counts:?} -> {after:?}");
            assert!(spread(&placement) <= before_spread, "case {case}: the byte spread never widens");
            assert!(moves.len() <= 64);
        }
    }

    #[test]
    fn a_shard_with_no_live_replica_is_reported_lost_and_full_nodes_unplaceable() {
        let s = |i: u32| ShardRef { store: "s".into(), shard: i };
        let placement: Placement = vec![
            (s(0), vec!["a".into(), "b".into()]),
            (s(1), vec!["c".into(), "a".into()]),
            (s(2), vec!["c".into(), "d".into()]),
        ];
        let live: Vec<String> = vec!["a".into(), "b".into()];
        let plan = plan_recreate(&placement, &live, &[]);
        assert_eq!(plan.lost, vec![s(2)], "c and d both gone: nothing to copy from");
        assert_eq!(plan.recreate, vec![Recreate { shard: s(1), lost: "c".into(), to: "b".into(), source: "a".into() }]);
        assert!(plan.unplaceable.is_empty());
        // RF 2 on two nodes, one gone: the only live node holds the shard already
        let plan = plan_recreate(&[(s(0), vec!["a".into(), "b".into()])], &["a".to_string()], &[]);
        assert_eq!(plan.unplaceable, vec![(s(0), "b".to_string())]);
        // draining a node that still serves: its only replica is copied from it, not lost
        let plan = plan_recreate(&placement, &["a".to_string(), "b".to_string()], &["c".to_string()]);
        assert!(plan.lost.is_empty(), "{plan:?}");
        assert_eq!(plan.recreate.iter().filter(|r| r.shard == s(2)).count(), 2, "c's and d's replicas of shard 2");
    }
}
