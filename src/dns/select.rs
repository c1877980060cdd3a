//! Weighted random sampling without replacement.
//!
//! Each candidate list carries a Walker/Vose alias table built at load, so
//! one draw costs one random number and one array read whatever the
//! list's length. Sampling without replacement is done by rejecting a
//! draw that hits a server already picked: conditioned on not hitting a
//! picked server, a draw from the full distribution is exactly a draw
//! proportional to the remaining weights, so the result has the same law as
//! successive sampling (draw, remove, renormalise). When one server holds
//! nearly all the weight, rejections could repeat; after a bounded number
//! of them the draw falls back to a linear scan over the remaining weights,
//! which has the same law. A list no longer than the largest answer (most
//! country zones) is sampled by successive draws directly: with the pool's
//! netspeeds (512 to 3 000 000) a small list often has one server holding
//! nearly all the weight, and rejection then redrew many times (under the
//! benchmark's mix this cut the daemon's user time per query by 15%).
//!
//! Layout: a list is one array of 16-byte columns, each holding its server,
//! its weight, its keep threshold and its alias's server, so a draw reads
//! one cache line, and a small list (up to 4 servers) is one line in all.
//! Under load the kernel's network stack runs between batches and evicts
//! the answer path's data from the caches; a profile of the benchmark
//! showed the draw dominated by misses on the separate keep, alias, server
//! and weight arrays this replaced.
//!
//! Architecture invariant: this module knows weights and indexes, not DNS.

use rand::Rng;

/// Rejections before falling back to the linear scan.
const MAX_REJECTIONS: u32 = 24;

/// The largest answer any origin may ask for; bounds [`Picked`].
pub const MAX_PICKS: usize = crate::shared::snapshot::MAX_HOSTS_LIMIT;

/// Servers picked for one answer (indexes into the table's server list),
/// on the stack.
#[derive(Clone, Copy, Debug)]
pub struct Picked {
    ids: [u32; MAX_PICKS],
    len: usize,
}

/// Equal when the same servers were picked in the same order (the unused
/// tail of the array does not count).
impl PartialEq for Picked {
    fn eq(&self, other: &Picked) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Picked {}

impl Default for Picked {
    fn default() -> Self {
        Self::new()
    }
}

impl Picked {
    pub const fn new() -> Self {
        Picked {
            ids: [0; MAX_PICKS],
            len: 0,
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.as_slice().contains(&id)
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    #[inline]
    fn push(&mut self, id: u32) {
        if self.len < MAX_PICKS {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }
}

/// One column of a list's alias table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Column {
    /// The column's server (an index into the table's server list); the
    /// columns are sorted by it (duplicates are merged when building).
    server: u32,
    weight: u32,
    /// Keep this column's server when a 32-bit random number is below
    /// `keep`, else take `alias_server`. A full column has
    /// `alias_server == server`.
    keep: u32,
    alias_server: u32,
}

/// Where a list is in its [`CandidateLists`], with its total weight: 16
/// bytes, kept by the zone table next to the list's zone and label, so a
/// draw reads the list's columns and no header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListId {
    start: u32,
    len: u32,
    total_weight: u64,
}

impl ListId {
    /// The empty list.
    pub const EMPTY: ListId = ListId {
        start: 0,
        len: 0,
        total_weight: 0,
    };
}

/// All candidate lists of a zone table in one array of 16-byte columns,
/// list after list: a short list is one or two cache lines, and a draw from
/// a long one reads one column.
#[derive(Clone, Debug)]
pub struct CandidateLists {
    columns: Box<[Column]>,
}

/// Builds a [`CandidateLists`].
#[derive(Debug, Default)]
pub struct ListsBuilder {
    columns: Vec<Column>,
}

impl ListsBuilder {
    pub fn new() -> ListsBuilder {
        ListsBuilder::default()
    }

    /// Add a list from (server index, weight) pairs; weights of 0 count as
    /// 1, a server given twice counts once. An empty list is
    /// [`ListId::EMPTY`].
    pub fn push(&mut self, mut entries: Vec<(u32, u32)>) -> ListId {
        if entries.is_empty() {
            return ListId::EMPTY;
        }
        entries.sort_unstable_by_key(|&(server, _)| server);
        entries.dedup_by_key(|&mut (server, _)| server);
        let weights: Vec<u32> = entries.iter().map(|&(_, w)| w.max(1)).collect();
        let total_weight: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let aliases = build_alias_table(&weights, total_weight);
        let id = ListId {
            start: u32::try_from(self.columns.len()).unwrap_or(u32::MAX),
            len: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            total_weight,
        };
        let columns =
            entries
                .iter()
                .zip(&weights)
                .zip(aliases)
                .map(|((&(server, _), &weight), alias)| match alias {
                    Alias::Full => Column {
                        server,
                        weight,
                        keep: 0,
                        alias_server: server,
                    },
                    Alias::Split { keep, alias } => Column {
                        server,
                        weight,
                        keep,
                        alias_server: entries[alias].0,
                    },
                });
        self.columns.extend(columns);
        id
    }

    pub fn finish(self) -> CandidateLists {
        CandidateLists {
            columns: self.columns.into(),
        }
    }
}

impl CandidateLists {
    /// The list `id`; an empty list for an id not made by this set's
    /// builder.
    #[inline]
    pub fn get(&self, id: ListId) -> Candidates<'_> {
        let start = id.start as usize;
        match self.columns.get(start..start + id.len as usize) {
            Some(columns) => Candidates {
                columns,
                total_weight: id.total_weight,
            },
            None => Candidates::default(),
        }
    }

    /// Heap memory held, in bytes.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.columns)
    }
}

/// One list of a [`CandidateLists`]: weighted servers with their alias
/// table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Candidates<'a> {
    columns: &'a [Column],
    total_weight: u64,
}

impl<'a> Candidates<'a> {
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The servers of the list, in ascending order.
    pub fn servers(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.columns.iter().map(|column| column.server)
    }

    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// One draw from the full distribution: a column uniformly, then its
    /// server or its alias's. The list must not be empty.
    #[inline]
    fn draw_one<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let random = rng.next_u64();
        let index = (((random >> 32) * self.columns.len() as u64) >> 32) as usize;
        let column = &self.columns[index];
        if (random as u32) < column.keep {
            column.server
        } else {
            column.alias_server
        }
    }

    /// Add up to `want` servers of this list to `picked`, none already in
    /// it, by weighted sampling without replacement.
    pub fn draw_into<R: Rng + ?Sized>(&self, rng: &mut R, want: usize, picked: &mut Picked) {
        let want = want.min(MAX_PICKS - picked.len());
        if want == 0 || self.columns.is_empty() {
            return;
        }
        // A short list is drawn from exactly, by successive weighted draws
        // among the servers not yet picked (at most MAX_PICKS, on the
        // stack): with few servers and uneven weights, rejection would
        // redraw often. A longer list always has more than `want` left
        // (picked + want <= MAX_PICKS < its length).
        if self.columns.len() <= MAX_PICKS {
            self.take_successive(rng, want, picked);
            return;
        }
        for _ in 0..want {
            let mut rejections = 0;
            loop {
                let server = self.draw_one(rng);
                if !picked.contains(server) {
                    picked.push(server);
                    break;
                }
                rejections += 1;
                if rejections == MAX_REJECTIONS {
                    self.draw_linear(rng, picked);
                    break;
                }
            }
        }
    }

    /// Up to `want` of the servers not yet picked, by successive weighted
    /// draws among them (the law of sampling without replacement; the
    /// first address, which many clients use, follows the weights). For
    /// lists of at most `MAX_PICKS` servers: they are gathered once on the
    /// stack.
    fn take_successive<R: Rng + ?Sized>(&self, rng: &mut R, want: usize, picked: &mut Picked) {
        let mut remaining = [(0u32, 0u64); MAX_PICKS];
        let mut count = 0;
        let mut total = 0u64;
        for column in self.columns.iter().take(MAX_PICKS) {
            if !picked.contains(column.server) {
                remaining[count] = (column.server, u64::from(column.weight));
                total += u64::from(column.weight);
                count += 1;
            }
        }
        for _ in 0..want.min(count) {
            let mut target = uniform_below(rng, total);
            let mut chosen = count - 1;
            for (i, &(_, weight)) in remaining[..count].iter().enumerate() {
                if target < weight {
                    chosen = i;
                    break;
                }
                target -= weight;
            }
            let (server, weight) = remaining[chosen];
            picked.push(server);
            total -= weight;
            remaining[chosen] = remaining[count - 1];
            count -= 1;
        }
    }

    /// Draw one server proportional to the weights of those not yet picked,
    /// by a scan. Returns false when none is left.
    fn draw_linear<R: Rng + ?Sized>(&self, rng: &mut R, picked: &mut Picked) -> bool {
        let picked_weight: u64 = self
            .columns
            .iter()
            .filter(|column| picked.contains(column.server))
            .map(|column| u64::from(column.weight))
            .sum();
        let remaining = self.total_weight - picked_weight;
        if remaining == 0 {
            return false;
        }
        let mut target = uniform_below(rng, remaining);
        for column in self.columns.iter() {
            if picked.contains(column.server) {
                continue;
            }
            let weight = u64::from(column.weight);
            if target < weight {
                picked.push(column.server);
                return true;
            }
            target -= weight;
        }
        false
    }
}

/// A uniform integer in 0..bound (bound > 0), by Lemire's multiply-shift
/// with rejection of the biased low zone. The zone's size (2^64 mod bound)
/// is below `bound`, so the division that finds it is only needed when
/// the low half falls below `bound`: rarely, for the pool's weights.
#[inline]
fn uniform_below<R: Rng + ?Sized>(rng: &mut R, bound: u64) -> u64 {
    let mut product = u128::from(rng.next_u64()) * u128::from(bound);
    if (product as u64) < bound {
        let biased = bound.wrapping_neg() % bound;
        while (product as u64) < biased {
            product = u128::from(rng.next_u64()) * u128::from(bound);
        }
    }
    (product >> 64) as u64
}

/// What one column of an alias table does with the column's share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alias {
    /// The column is its own server's whole.
    Full,
    /// Kept with probability keep / 2^32, else the column `alias` is taken.
    Split { keep: u32, alias: usize },
}

/// Vose's alias method in exact integer arithmetic. Each column's share is
/// n * weight, compared against the total weight.
fn build_alias_table(weights: &[u32], total: u64) -> Vec<Alias> {
    let n = weights.len();
    let mut columns = vec![Alias::Full; n];
    if n == 0 || total == 0 {
        return columns;
    }
    // scaled[i] = weight_i * n; a column is full at `total`.
    let mut scaled: Vec<u128> = weights.iter().map(|&w| u128::from(w) * n as u128).collect();
    let total = u128::from(total);
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < total);
    while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
        // scaled[s] < total, so the quotient is below 2^32.
        let keep = ((scaled[s] << 32) / total) as u32;
        columns[s] = Alias::Split { keep, alias: l };
        scaled[l] -= total - scaled[s];
        if scaled[l] < total {
            large.pop();
            small.push(l);
        }
    }
    // What is left (in `small` or `large`) is full up to rounding, and
    // stays `Full`.
    columns
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn one_list(entries: Vec<(u32, u32)>) -> (CandidateLists, ListId) {
        let mut builder = ListsBuilder::new();
        let id = builder.push(entries);
        (builder.finish(), id)
    }

    /// Servers 0, 1, ... with these weights.
    fn numbered_list(weights: &[u32]) -> (CandidateLists, ListId) {
        one_list(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (i as u32, w))
                .collect(),
        )
    }

    #[test]
    fn never_repeats_and_respects_want() {
        let (lists, id) = one_list((0..10).map(|i| (i, 1 + i * 100)).collect());
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let mut picked = Picked::new();
            candidates.draw_into(&mut rng, 4, &mut picked);
            let mut ids = picked.as_slice().to_vec();
            assert_eq!(ids.len(), 4);
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 4);
        }
    }

    #[test]
    fn takes_everything_when_there_is_not_enough() {
        let (lists, id) = one_list(vec![(5, 10), (9, 1)]);
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(2);
        let mut picked = Picked::new();
        candidates.draw_into(&mut rng, 4, &mut picked);
        let mut ids = picked.as_slice().to_vec();
        ids.sort();
        assert_eq!(ids, vec![5, 9]);
    }

    #[test]
    fn skips_servers_picked_from_another_list() {
        let (lists, id) = one_list(vec![(1, 10), (2, 10), (3, 10)]);
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut picked = Picked::new();
        picked.push(2);
        picked.push(77);
        candidates.draw_into(&mut rng, 4, &mut picked);
        let mut ids = picked.as_slice().to_vec();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3, 77]);
    }

    #[test]
    fn a_dominant_weight_does_not_loop() {
        let (lists, id) = one_list(vec![(1, u32::MAX), (2, 1), (3, 1), (4, 1), (5, 1)]);
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(4);
        let mut picked = Picked::new();
        candidates.draw_into(&mut rng, 4, &mut picked);
        assert_eq!(picked.len(), 4);
        assert!(picked.contains(1));
    }

    /// A list longer than MAX_PICKS is drawn by rejection; with one server
    /// holding nearly all the weight every later draw is rejected until the
    /// linear fallback takes over: it still ends, with distinct servers.
    #[test]
    fn a_dominant_weight_in_a_long_list_falls_back_to_the_scan() {
        let mut weights = vec![1u32; 40];
        weights[7] = u32::MAX;
        let (lists, id) = numbered_list(&weights);
        let candidates = lists.get(id);
        assert!(candidates.len() > MAX_PICKS);
        let mut rng = SmallRng::seed_from_u64(8);
        for _ in 0..1_000 {
            let mut picked = Picked::new();
            candidates.draw_into(&mut rng, 4, &mut picked);
            let mut ids = picked.as_slice().to_vec();
            assert!(ids.contains(&7), "{ids:?}");
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 4);
        }
    }

    /// The alias table alone reproduces the weights (one draw at a time).
    #[test]
    fn single_draws_follow_the_weights() {
        let weights = [1u32, 2, 3, 4, 10, 80];
        let (lists, id) = numbered_list(&weights);
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(5);
        let mut counts = [0u64; 6];
        let draws = 200_000;
        for _ in 0..draws {
            counts[candidates.draw_one(&mut rng) as usize] += 1;
        }
        let total: u32 = weights.iter().sum();
        let chi_square: f64 = counts
            .iter()
            .zip(weights)
            .map(|(&observed, w)| {
                let expected = draws as f64 * f64::from(w) / f64::from(total);
                (observed as f64 - expected).powi(2) / expected
            })
            .sum();
        // 5 degrees of freedom: the 99.9% quantile is 20.52.
        assert!(
            chi_square < 20.52,
            "chi-square {chi_square}, counts {counts:?}"
        );
    }

    /// The columns give every server exactly its share of the weight, up
    /// to the 2^-32 rounding of each keep threshold.
    #[test]
    fn the_alias_columns_hold_each_servers_share() {
        let mut rng = SmallRng::seed_from_u64(6);
        for n in [1usize, 2, 3, 7, 64, 1000] {
            let entries: Vec<(u32, u32)> = (0..n)
                .map(|i| {
                    (
                        i as u32 * 3,
                        rand::RngExt::random_range(&mut rng, 1..3_000_000),
                    )
                })
                .collect();
            let (lists, id) = one_list(entries.clone());
            let candidates = lists.get(id);
            let total = candidates.total_weight() as f64;
            let mut mass = std::collections::HashMap::<u32, f64>::new();
            assert_eq!(candidates.len(), n);
            for column in candidates.columns.iter() {
                let keep = if column.server == column.alias_server {
                    1.0
                } else {
                    f64::from(column.keep) / 4_294_967_296.0
                };
                *mass.entry(column.server).or_default() += keep / n as f64;
                *mass.entry(column.alias_server).or_default() += (1.0 - keep) / n as f64;
            }
            for (server, weight) in entries {
                let expected = f64::from(weight) / total;
                let got = mass.get(&server).copied().unwrap_or(0.0);
                assert!(
                    (got - expected).abs() < 1e-8,
                    "n {n}: server {server} has {got}, weight share {expected}"
                );
            }
        }
    }

    /// Lists laid out one after another each read back whole, the empty
    /// one included, and an id from elsewhere reads as empty.
    #[test]
    fn lists_share_one_array() {
        let mut builder = ListsBuilder::new();
        let a = builder.push(vec![(7, 5), (3, 1)]);
        let empty = builder.push(Vec::new());
        let b = builder.push(vec![(1, 1 << 31), (2, 1 << 31), (9, u32::MAX)]);
        let lists = builder.finish();
        assert_eq!(empty, ListId::EMPTY);
        assert_eq!(lists.get(a).servers().collect::<Vec<_>>(), vec![3, 7]);
        assert_eq!(lists.get(a).total_weight(), 6);
        assert!(lists.get(empty).is_empty());
        assert_eq!(lists.get(b).servers().collect::<Vec<_>>(), vec![1, 2, 9]);
        assert_eq!(
            lists.get(b).total_weight(),
            (1u64 << 32) + u64::from(u32::MAX)
        );
        let elsewhere = ListId {
            start: 1000,
            len: 3,
            total_weight: 6,
        };
        assert!(lists.get(elsewhere).is_empty());
    }

    /// A short list with uneven weights (drawn by successive draws, not by
    /// rejection): the first pick follows the weights, and the second,
    /// given the first, follows the weights of the rest.
    #[test]
    fn short_lists_sample_without_replacement_by_weight() {
        let weights = [1u32, 2, 3, 4, 10, 80];
        let (lists, id) = numbered_list(&weights);
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(7);
        let draws = 200_000;
        let mut first = [0u64; 6];
        let mut second_after_heaviest = [0u64; 6];
        for _ in 0..draws {
            let mut picked = Picked::new();
            candidates.draw_into(&mut rng, 2, &mut picked);
            let [a, b] = picked.as_slice() else {
                panic!("picked {:?}", picked.as_slice());
            };
            assert_ne!(a, b);
            first[*a as usize] += 1;
            if *a == 5 {
                second_after_heaviest[*b as usize] += 1;
            }
        }
        let chi_square = |counts: &[u64], weights: &[u32]| -> f64 {
            let n: u64 = counts.iter().sum();
            let total: u32 = weights.iter().sum();
            counts
                .iter()
                .zip(weights)
                .filter(|&(_, &w)| w > 0)
                .map(|(&observed, &w)| {
                    let expected = n as f64 * f64::from(w) / f64::from(total);
                    (observed as f64 - expected).powi(2) / expected
                })
                .sum()
        };
        // 5 and 4 degrees of freedom: 99.9% quantiles 20.52 and 18.47.
        let c = chi_square(&first, &weights);
        assert!(c < 20.52, "first pick: chi-square {c}, counts {first:?}");
        assert_eq!(second_after_heaviest[5], 0);
        let c = chi_square(&second_after_heaviest, &[1, 2, 3, 4, 10, 0]);
        assert!(
            c < 18.47,
            "second pick: chi-square {c}, counts {second_after_heaviest:?}"
        );
    }
}
